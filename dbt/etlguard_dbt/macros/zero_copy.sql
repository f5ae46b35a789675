{#-
  Zero-copy snapshots for table models, and for incremental models run with --full-refresh
  (see docs/dbt.md).

  etlguard_dbt.zero_copy_table() is the body of a `table` materialization, and
  etlguard_dbt.zero_copy_incremental() of an `incremental` one. A dbt project opts in by naming
  them as its own materializations, one line each per adapter type it runs on:

    {% materialization table, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
    {% materialization incremental, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_incremental()) }}{% endmaterialization %}

  Outside a guarded run (no ETLGUARD_ZERO_COPY in the environment), and for every model that
  etlguard did not name there, they return dbt's stock materialization unchanged.

  Inside a guarded run, etlguard names in ETLGUARD_ZERO_COPY, per protected model that dbt
  rebuilds whole, the table the replaced one must become ({"silver.int_contracts":
  ["etlguard_snapshots", "s12_k3j4h5g6"]}). The new table is built as stock; then, instead of
  dropping the old table, one atomic step keeps it under that name and puts the new one in place:
    MySQL/MariaDB: RENAME TABLE t TO kept, t__dbt_tmp TO t (no moment without a table)
    PostgreSQL:    in the model's transaction, t's indexes renamed to unique names, t renamed
                   to the kept name and moved into the snapshot schema (SET SCHEMA), the new
                   table renamed into place
    DuckDB:        both renames in the model's transaction (DuckDB renames within a schema
                   only, so the kept table stays in the model's schema under an _etlguard_ name)
  The kept name existing proves the swap happened; etlguard journals it before dbt starts.
  An incremental model is named only when etlguard expects a full refresh; if dbt would update
  it in place instead, the model stops before changing anything (etlguard did not copy it).
-#}

{% macro zero_copy_target(relation) -%}
  {%- set plan = fromjson(env_var('ETLGUARD_ZERO_COPY', '{}')) -%}
  {%- set kept = plan.get(relation.schema ~ '.' ~ relation.identifier) -%}
  {{ return(kept) }}
{%- endmacro %}


{% macro zero_copy_table() -%}
  {%- set kept = etlguard_dbt.zero_copy_target(this) -%}
  {%- if kept is none -%}
    {{ return(adapter.dispatch('stock_table', 'etlguard_dbt')()) }}
  {%- endif -%}
  {%- if model['language'] != 'sql' -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy keeps only SQL table models; " ~ this ~ " is " ~ model['language']
         ~ ": take it out of etlguard's zero-copy set (dbt: {zero_copy: false})") }}
  {%- endif -%}
  {{ return(adapter.dispatch('zero_copy_table', 'etlguard_dbt')(kept)) }}
{%- endmacro %}


{% macro zero_copy_incremental() -%}
  {%- set kept = etlguard_dbt.zero_copy_target(this) -%}
  {%- if kept is none -%}
    {{ return(adapter.dispatch('stock_incremental', 'etlguard_dbt')()) }}
  {%- endif -%}
  {%- if not should_full_refresh() -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy expected a full refresh of " ~ this ~ " (it was not copied before the "
         ~ "run), but dbt would update it in place; nothing was changed. Run etlguard with the dbt "
         ~ "command that has --full-refresh, or leave full_refresh unset in the model's config") }}
  {%- endif -%}
  {#- a full refresh builds the table whole, as a table model does -#}
  {{ return(etlguard_dbt.zero_copy_table()) }}
{%- endmacro %}


{# -- stock: dbt's own materializations for the adapter ------------------------------------- #}

{% macro default__stock_table() -%}
  {{ return(dbt.materialization_table_default()) }}
{%- endmacro %}

{% macro duckdb__stock_table() -%}
  {{ return(dbt.materialization_table_duckdb()) }}
{%- endmacro %}

{% macro default__stock_incremental() -%}
  {{ return(dbt.materialization_incremental_default()) }}
{%- endmacro %}

{% macro duckdb__stock_incremental() -%}
  {{ return(dbt.materialization_incremental_duckdb()) }}
{%- endmacro %}

{% macro mysql__stock_incremental() -%}
  {{ return(dbt.materialization_incremental_mysql()) }}
{%- endmacro %}

{% macro mysql5__stock_incremental() -%}
  {{ return(dbt.materialization_incremental_mysql5()) }}
{%- endmacro %}

{% macro mariadb__stock_incremental() -%}
  {{ return(dbt.materialization_incremental_mariadb()) }}
{%- endmacro %}


{# -- MySQL / MariaDB (dbt-mysql: adapter types mysql, mysql5, mariadb) ------------------------ #}

{% macro default__zero_copy_table(kept) -%}
  {{ exceptions.raise_compiler_error(
       "etlguard zero-copy has no table materialization for adapter type '" ~ target.type
       ~ "'; set dbt: {zero_copy: false} in etlguard's config") }}
{%- endmacro %}

{% macro mysql__zero_copy_table(kept) -%}
  {{ return(etlguard_dbt.zero_copy_table_mysql(kept)) }}
{%- endmacro %}

{% macro mysql5__zero_copy_table(kept) -%}
  {{ return(etlguard_dbt.zero_copy_table_mysql(kept)) }}
{%- endmacro %}

{% macro mariadb__zero_copy_table(kept) -%}
  {{ return(etlguard_dbt.zero_copy_table_mysql(kept)) }}
{%- endmacro %}

{% macro zero_copy_table_mysql(kept) -%}
  {#- dbt-core's table materialization, with the drop-then-rename pair and the final drop
      replaced by one RENAME TABLE of both tables. -#}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') %}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'table' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {%- set kept_relation = api.Relation.create(schema=kept[0], identifier=kept[1], type='table') -%}
  {% set grant_config = config.get('grants') %}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ get_create_table_as_sql(False, intermediate_relation, sql) }}
  {%- endcall %}

  {% set existing_relation = load_cached_relation(existing_relation) if existing_relation is not none else none %}
  {% if existing_relation is not none and existing_relation.type == 'table' %}
    {% call statement('etlguard_zero_copy_swap') -%}
      rename table {{ target_relation }} to {{ kept_relation }}, {{ intermediate_relation }} to {{ target_relation }}
    {%- endcall %}
    {% do adapter.cache_dropped(target_relation) %}
    {% do adapter.cache_renamed(intermediate_relation, target_relation) %}
  {% else %}
    {#- nothing to keep (a first build, or a view etlguard does not protect): stock -#}
    {% if existing_relation is not none %}
      {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {% endif %}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}
  {% endif %}

  {% do create_indexes(target_relation) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ drop_relation_if_exists(backup_relation) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{%- endmacro %}


{# -- PostgreSQL (dbt-postgres: adapter type postgres) ---------------------------------------- #}

{% macro postgres__zero_copy_table(kept) -%}
  {#- dbt-core's table materialization (which dbt-postgres uses), with the rename to the backup
      name and the drop after the commit replaced by keeping the old table: renamed and moved
      into the snapshot schema in the model's transaction, so the kept table exists exactly
      when the new one is in place. -#}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') %}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'table' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {% set grant_config = config.get('grants') %}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% do etlguard_dbt.postgres_check_snapshot_schema(kept[0]) %}
  {% call statement('main') -%}
    {{ get_create_table_as_sql(False, intermediate_relation, sql) }}
  {%- endcall %}
  {% do create_indexes(intermediate_relation) %}

  {% set existing_relation = load_cached_relation(existing_relation) if existing_relation is not none else none %}
  {% if existing_relation is not none and existing_relation.type == 'table' %}
    {% do etlguard_dbt.postgres_keep(existing_relation, kept) %}
    {% do adapter.cache_dropped(existing_relation) %}
  {% elif existing_relation is not none %}
    {{ adapter.rename_relation(existing_relation, backup_relation) }}
  {% endif %}
  {{ adapter.rename_relation(intermediate_relation, target_relation) }}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ drop_relation_if_exists(backup_relation) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{%- endmacro %}

{% macro postgres_check_snapshot_schema(schema) -%}
  {#- SET SCHEMA needs CREATE on the snapshot schema: say so before building anything. -#}
  {%- set allowed = run_query("select has_schema_privilege(" ~ etlguard_dbt.postgres_literal(schema)
                              ~ ", 'CREATE')").columns[0].values()[0] -%}
  {%- if not allowed -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy cannot keep " ~ this ~ ": dbt's role " ~ target.user ~ " needs CREATE on "
         ~ "etlguard's snapshot schema " ~ schema ~ " (GRANT CREATE ON SCHEMA ... TO ...), "
         ~ "or set dbt: {zero_copy: false}") }}
  {%- endif -%}
{%- endmacro %}

{% macro postgres_keep(existing_relation, kept) -%}
  {#- Lock the old table first: from here on no view or foreign key can start depending on it.
      A view reads a table by OID, not by name, so it would follow the kept table into the
      snapshot schema and go on reading the old rows: refuse (etlguard copies such tables; this
      catches one made during the run). Its indexes move with it, so they get unique names
      first, lest they collide in the snapshot schema (a contract's "t_pkey" of another night). -#}
  {%- set oid = etlguard_dbt.postgres_literal(existing_relation | string) ~ "::regclass" -%}
  {% call statement('etlguard_zero_copy_lock') -%}
    lock table {{ existing_relation }} in access exclusive mode
  {%- endcall %}
  {%- set dependents = run_query(
        "select distinct v.oid::regclass::text from pg_depend d join pg_rewrite r on r.oid = d.objid "
        ~ "join pg_class v on v.oid = r.ev_class where d.classid = 'pg_rewrite'::regclass "
        ~ "and d.refobjid = " ~ oid ~ " and v.oid <> d.refobjid "
        ~ "union select conrelid::regclass::text from pg_constraint where contype = 'f' "
        ~ "and confrelid = " ~ oid ~ " order by 1").columns[0].values() -%}
  {%- if dependents | length > 0 -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy cannot keep " ~ this ~ ": " ~ (dependents | join(', '))
         ~ " depends on it (a view or foreign key follows the table, not its name); nothing was "
         ~ "changed. Run etlguard again (it copies such a table), or set dbt: {zero_copy: false}") }}
  {%- endif -%}
  {%- set indexes = run_query(
        "select quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_index i "
        ~ "join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace "
        ~ "where i.indrelid = " ~ oid ~ " order by c.relname").columns[0].values() -%}
  {% for index in indexes %}
    {% call statement('etlguard_zero_copy_index') -%}
      alter index {{ index }} rename to {{ adapter.quote(kept[1] ~ '_i' ~ loop.index) }}
    {%- endcall %}
  {% endfor %}
  {% call statement('etlguard_zero_copy_keep') -%}
    alter table {{ existing_relation }} rename to {{ adapter.quote(kept[1]) }};
    alter table {{ adapter.quote(existing_relation.schema) }}.{{ adapter.quote(kept[1]) }} set schema {{ adapter.quote(kept[0]) }}
  {%- endcall %}
{%- endmacro %}

{% macro postgres_literal(text) -%}
  {{- return("'" ~ (text | string | replace("'", "''")) ~ "'") -}}
{%- endmacro %}


{# -- DuckDB ----------------------------------------------------------------------------------- #}

{% macro duckdb__zero_copy_table(kept) -%}
  {#- dbt-duckdb's table materialization for SQL models, with the old table renamed to the kept
      name inside the model's transaction instead of to the backup name that is dropped after
      the commit. A table that other tables reference by foreign key cannot be renamed: fail
      before anything changed, so the model's old table stays live. -#}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') %}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'table' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {%- if kept[0] != target_relation.schema -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy on DuckDB keeps the old table in the model's own schema, not in "
         ~ kept[0] ~ "; upgrade etlguard_dbt and etlguard together") }}
  {%- endif -%}
  {%- if existing_relation is not none and has_foreign_key_constraints(existing_relation) -%}
    {{ exceptions.raise_compiler_error(
         "etlguard zero-copy cannot keep " ~ this ~ ": it has foreign keys, so dbt-duckdb rebuilds it "
         ~ "in place; take it out of the zero-copy set (dbt: {zero_copy: false})") }}
  {%- endif -%}
  {% set grant_config = config.get('grants') %}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{- create_table_as(False, intermediate_relation, compiled_code, 'sql') }}
  {%- endcall %}

  {% if existing_relation is not none %}
    {% do drop_indexes_on_relation(existing_relation) %}
    {% if existing_relation.type == 'table' %}
      {{ adapter.rename_relation(existing_relation, existing_relation.incorporate(path={'identifier': kept[1]})) }}
    {% else %}
      {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {% endif %}
  {% endif %}
  {{ adapter.rename_relation(intermediate_relation, target_relation) }}

  {% do create_indexes(target_relation) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ drop_relation_if_exists(backup_relation) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{%- endmacro %}

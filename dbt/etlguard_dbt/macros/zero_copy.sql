{#-
  Zero-copy snapshots for table models (see docs/dbt.md).

  etlguard_dbt.zero_copy_table() is the body of a `table` materialization. A dbt project opts in
  by naming it as its own table materialization, one line per adapter type it runs on:

    {% materialization table, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}

  Outside a guarded run (no ETLGUARD_ZERO_COPY in the environment), and for every model that
  etlguard did not name there, it returns dbt's stock table materialization unchanged.

  Inside a guarded run, etlguard names in ETLGUARD_ZERO_COPY, per protected table model, the
  table the replaced one must become ({"silver.int_contracts": ["etlguard_snapshots",
  "s12_k3j4h5g6"]}). The new table is built as stock; then, instead of dropping the old table,
  one atomic statement keeps it under that name and puts the new one in place:
    MySQL/MariaDB: RENAME TABLE t TO kept, t__dbt_tmp TO t (no moment without a table)
    DuckDB:        both renames in the model's transaction (DuckDB renames within a schema
                   only, so the kept table stays in the model's schema under an _etlguard_ name)
  The kept name existing proves the swap happened; etlguard journals it before dbt starts.
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


{# -- stock: dbt's own table materialization for the adapter ------------------------------- #}

{% macro default__stock_table() -%}
  {{ return(dbt.materialization_table_default()) }}
{%- endmacro %}

{% macro duckdb__stock_table() -%}
  {{ return(dbt.materialization_table_duckdb()) }}
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

{#-
  etlguard_dbt.safe_update(update_sql, validation_sql, schema=none)

  Renders a CALL of etlguard's stored procedure, for a post-hook or `dbt run-operation`:

    CALL `etlguard`.`run_safe_incremental_update`('<update_sql>', '<validation_sql>')

  The procedure runs update_sql (ONE statement: UPDATE, INSERT, DELETE or REPLACE) and then
  validation_sql (a query returning ONE value) in one transaction, and commits only if that
  value is true (not 0, not NULL). Otherwise it rolls back and fails the hook with SQLSTATE
  45000. It cannot undo the model's own statement, which dbt committed before the hook ran,
  and it cannot protect DDL. Qualify table names (`this` does): inside the procedure the
  default schema is the procedure's own.

  schema: where the procedure is installed; default var('etlguard_schema', 'etlguard').
  Install it once with `etlguard install-procedures [--schema S]`.
-#}
{% macro safe_update(update_sql, validation_sql, schema=none) -%}
  {%- if target.type not in ('mysql', 'mysql5', 'mariadb') -%}
    {{ exceptions.raise_compiler_error(
         "etlguard_dbt.safe_update calls a MySQL/MariaDB stored procedure; target type '"
         ~ target.type ~ "' has none. On other targets guard the run with `etlguard run`.") }}
  {%- endif -%}
  {%- set where = schema or var('etlguard_schema', 'etlguard') -%}
  CALL {{ etlguard_dbt.mysql_identifier(where) }}.{{ etlguard_dbt.mysql_identifier('run_safe_incremental_update') }}({{ etlguard_dbt.mysql_string(update_sql) }}, {{ etlguard_dbt.mysql_string(validation_sql) }})
{%- endmacro %}


{#- A MySQL string literal holding `text` exactly: backslashes and quotes doubled (this assumes
    the default sql_mode; under NO_BACKSLASH_ESCAPES a backslash would arrive doubled).
    Surrounding whitespace and trailing semicolons are dropped: the procedure runs ONE
    statement, and wraps the validation in SELECT (...). -#}
{% macro mysql_string(text) -%}
  {%- set body = modules.re.sub('[\\s;]+$', '', (text | string) | trim) -%}
  '{{ body | replace("\\", "\\\\") | replace("'", "''") }}'
{%- endmacro %}


{% macro mysql_identifier(name) -%}
  `{{ (name | string) | replace('`', '``') }}`
{%- endmacro %}

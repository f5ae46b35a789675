{#
  Models and seeds land in schemas named exactly <prefix><custom schema>, e.g. bronze, silver,
  gold, or t42_bronze ... when WAREHOUSE_SCHEMA_PREFIX=t42_ (tests use a unique prefix each).
  dbt's default would be <target schema>_<custom schema>.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ env_var('WAREHOUSE_SCHEMA_PREFIX', '') ~ (custom_schema_name | trim) }}
    {%- endif -%}
{%- endmacro %}

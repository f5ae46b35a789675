{# The business day being loaded, as a SQL date literal. #}
{% macro today() -%}
    cast('{{ var("today") }}' as date)
{%- endmacro %}

{# Portable "date minus n days" for MySQL/MariaDB, PostgreSQL and DuckDB. #}
{% macro date_minus_days(expr, n) -%}
    {%- if target.type in ('mysql', 'mysql5', 'mariadb') -%}
        date_sub({{ expr }}, interval {{ n }} day)
    {%- elif target.type == 'postgres' -%}
        cast({{ expr }} - interval '{{ n }} days' as date)
    {%- else -%}
        cast({{ expr }} - interval {{ n }} day as date)
    {%- endif -%}
{%- endmacro %}

{#
  Failure injection: with --vars '{fail_model: <name>}', the named model's SQL ends with a
  syntax error, so the database rejects it at run time (after upstream models committed).
#}
{% macro inject_failure() -%}
    {%- if var('fail_model', '') and var('fail_model') == model.name %}
    -- etlguard example: failure injected by var fail_model={{ model.name }}
    this is an injected syntax error
    {%- endif -%}
{%- endmacro %}

{% macro fail_post_hook_enabled() -%}
    {{ return((var('fail_post_hook', false) | string | lower) in ('true', '1', 'yes')) }}
{%- endmacro %}

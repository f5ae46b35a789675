{#
  Close the previous versions of an SCD2 table after new versions were inserted: every row that
  is still current but is older than its tenant's newest version gets valid_to = (newest
  valid_from - 1 day) and is_current = false.

  Written so that MySQL 8 / Aurora MySQL accept it: MySQL rejects an UPDATE whose WHERE has a
  subquery reading the same table (error 1093, "You can't specify target table ... for update
  in FROM clause"), which is what the design note's hook does (MariaDB happens to accept it).
  Joining a derived table is MySQL's documented workaround; it only holds when the derived
  table is materialized rather than merged into the outer query, and one with GROUP BY /
  an aggregate can never be merged, so it always is.
  DuckDB has no UPDATE ... JOIN, so it gets UPDATE ... FROM.
#}
{% macro close_scd2_versions(relation, key='tenant_id') -%}
{%- if target.type in ('mysql', 'mysql5', 'mariadb') -%}
update {{ relation }} as t
join (
    select {{ key }}, max(valid_from) as latest_valid_from
    from {{ relation }}
    group by {{ key }}
) as latest
    on latest.{{ key }} = t.{{ key }}
set t.valid_to = {{ date_minus_days('latest.latest_valid_from', 1) }},
    t.is_current = false
where t.is_current = true
  and t.valid_from < latest.latest_valid_from
{%- else -%}
update {{ relation }} as t
set valid_to = {{ date_minus_days('latest.latest_valid_from', 1) }},
    is_current = false
from (
    select {{ key }}, max(valid_from) as latest_valid_from
    from {{ relation }}
    group by {{ key }}
) as latest
where latest.{{ key }} = t.{{ key }}
  and t.is_current = true
  and t.valid_from < latest.latest_valid_from
{%- endif -%}
{%- endmacro %}

{# With autocommit off (dbt-mysql), make the statements run so far permanent. DuckDB runs
   non-transactional hooks in autocommit mode already. #}
{% macro commit_if_needed() -%}
{%- if target.type in ('mysql', 'mysql5', 'mariadb') -%}
commit
{%- endif -%}
{%- endmacro %}

{# The failing statement used by --vars '{fail_post_hook: true}': a column that does not exist. #}
{% macro injected_post_hook_failure(relation) -%}
select etlguard_injected_post_hook_failure from {{ relation }}
{%- endmacro %}


{# The closing UPDATE and its validation, run atomically by etlguard's stored procedure.
   --vars '{fail_safe_update: true}' makes the validation fail, so the procedure rolls the
   UPDATE back and fails the hook (SQLSTATE 45000). #}
{% macro close_scd2_versions_safely(relation, key='tenant_id') -%}
{%- set update -%}{{ close_scd2_versions(relation, key) }}{%- endset -%}
{%- set validation -%}
select count(*) = 0{% if var('fail_safe_update', false) %} and 1 = 0{% endif %} from (
    select {{ key }} from {{ relation }} where is_current = true
    group by {{ key }} having count(*) <> 1
) as more_than_one_current
{%- endset -%}
{{ etlguard_dbt.safe_update(update, validation) }}
{%- endmacro %}

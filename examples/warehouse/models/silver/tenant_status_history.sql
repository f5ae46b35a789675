{#
  SCD2 history of each tenant's status (applicant -> contracted -> active -> notice_given ->
  moved_out), one version per change, valid_from = the day the change was loaded.

  Each run computes every tenant's status as of var('today') and inserts a new version only for
  tenants that are new or whose status changed. The post-hook then closes the previous versions
  (valid_to = day before the new version, is_current = false).

  dbt-mysql 1.7 ignores incremental_strategy and on_schema_change (it always does
  DELETE ... WHERE (key) IN (...) + INSERT); dbt-duckdb honours delete+insert. Both give the same
  result here. The closing hook runs inside the model's transaction on both adapters (no
  START TRANSACTION in a hook: on MySQL that would silently commit the model's data first).

  --vars '{etlguard_safe_update: true}' (MySQL/MariaDB) runs the closing hook through etlguard's
  stored procedure instead, so the UPDATE and its validation (one current row per tenant) commit
  together or not at all; '{fail_safe_update: true}' makes that validation fail.

  --vars '{fail_post_hook: true}' replaces that with hooks that run after the model's commit
  (transaction: false): close previous versions, commit, then a failing statement. So the run
  fails with the new rows AND the closing UPDATE already committed, as in the design note's
  Testing Plan test 2, and the downstream models are skipped.
#}
{%- if fail_post_hook_enabled() -%}
    {%- set hooks = [
        {"sql": "{{ close_scd2_versions(this) }}", "transaction": false},
        {"sql": "{{ commit_if_needed() }}", "transaction": false},
        {"sql": "{{ injected_post_hook_failure(this) }}", "transaction": false},
    ] -%}
{%- elif var('etlguard_safe_update', false) and target.type in ('mysql', 'mysql5', 'mariadb') -%}
    {#- The design note's Layer 3: the closing UPDATE and its validation commit together or not
        at all, through etlguard's stored procedure (etlguard install-procedures). It runs after
        the model's commit (transaction: false): inside the model's transaction the procedure's
        START TRANSACTION would commit the model's rows implicitly. -#}
    {%- set hooks = [{"sql": "{{ close_scd2_versions_safely(this) }}", "transaction": false}] -%}
{%- else -%}
    {%- set hooks = ["{{ close_scd2_versions(this) }}"] -%}
{%- endif -%}

{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'valid_from'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook=hooks,
) }}

with tenants as (
    select tenant_id
    from {{ ref('raw_tenants') }}
    where registered_date <= {{ today() }}
),
contracts as (
    select
        tenant_id,
        max(contract_id) as contract_id,
        max(case when contract_state = 'active' then 1 else 0 end) as has_started
    from {{ ref('int_contracts') }}
    group by tenant_id
),
notices as (
    select
        tenant_id,
        max(case when moveout_date <= {{ today() }} then 1 else 0 end) as has_moved_out
    from {{ ref('raw_moveout_notices') }}
    where notice_date <= {{ today() }}
    group by tenant_id
),
status_today as (
    select
        t.tenant_id,
        case
            when n.has_moved_out = 1 then 'moved_out'
            when n.tenant_id is not null then 'notice_given'
            when c.has_started = 1 then 'active'
            when c.tenant_id is not null then 'contracted'
            else 'applicant'
        end as status,
        c.contract_id
    from tenants as t
    left join contracts as c on c.tenant_id = t.tenant_id
    left join notices as n on n.tenant_id = t.tenant_id
)
select
    s.tenant_id,
    s.status,
    s.contract_id,
    {{ today() }} as valid_from,
    cast(null as date) as valid_to,
    true as is_current
from status_today as s
{% if is_incremental() %}
left join (
    select tenant_id, status
    from {{ this }}
    where is_current = true
) as cur on cur.tenant_id = s.tenant_id
where cur.tenant_id is null
   or cur.status <> s.status
{% endif %}
{{ inject_failure() }}

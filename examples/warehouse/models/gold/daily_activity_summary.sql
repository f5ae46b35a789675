-- One row per calendar day with activity up to "today".
with events as (
    select registered_date as activity_date, 'new_tenant' as kind
    from {{ ref('raw_tenants') }}
    where registered_date <= {{ today() }}
    union all
    select signed_date, 'new_contract' from {{ ref('int_contracts') }}
    union all
    select notice_date, 'moveout_notice' from {{ ref('moveout_notices') }}
    union all
    select moveout_date, 'moveout' from {{ ref('moveouts') }}
    union all
    select valid_from, 'status_change' from {{ ref('tenant_status_history') }}
)
select
    activity_date,
    count(case when kind = 'new_tenant' then 1 end) as new_tenants,
    count(case when kind = 'new_contract' then 1 end) as new_contracts,
    count(case when kind = 'moveout_notice' then 1 end) as moveout_notices,
    count(case when kind = 'moveout' then 1 end) as moveouts,
    count(case when kind = 'status_change' then 1 end) as status_changes
from events
group by activity_date
{{ inject_failure() }}

{{ config(materialized='table') }}

-- Contracts signed up to "today", with tenant and room details.
with contracts as (
    select * from {{ ref('raw_contracts') }}
    where signed_date <= {{ today() }}
),
tenants as (
    select * from {{ ref('raw_tenants') }}
    where registered_date <= {{ today() }}
),
rooms as (
    select * from {{ ref('raw_rooms') }}
    where listed_date <= {{ today() }}
)
select
    c.contract_id,
    c.tenant_id,
    t.tenant_name,
    c.room_id,
    r.building,
    r.room_number,
    c.signed_date,
    c.start_date,
    c.end_date,
    c.monthly_rent,
    case when c.start_date <= {{ today() }} then 'active' else 'signed' end as contract_state
from contracts as c
join tenants as t on t.tenant_id = c.tenant_id
left join rooms as r on r.room_id = c.room_id
{{ inject_failure() }}

-- Contracts signed in the 7 days up to and including "today".
select
    contract_id,
    tenant_id,
    tenant_name,
    building,
    room_number,
    signed_date,
    start_date,
    monthly_rent,
    contract_state
from {{ ref('int_contracts') }}
where signed_date > {{ date_minus_days(today(), 7) }}
{{ inject_failure() }}

-- Move-out notices received up to "today", with the room and the tenant's current status.
select
    n.notice_id,
    n.contract_id,
    n.tenant_id,
    c.tenant_name,
    c.building,
    c.room_number,
    n.notice_date,
    n.moveout_date,
    n.reason,
    case when n.moveout_date <= {{ today() }} then 'completed' else 'pending' end as notice_state,
    h.status as tenant_status
from {{ ref('raw_moveout_notices') }} as n
left join {{ ref('int_contracts') }} as c on c.contract_id = n.contract_id
left join {{ ref('tenant_status_history') }} as h
    on h.tenant_id = n.tenant_id and h.is_current = true
where n.notice_date <= {{ today() }}
{{ inject_failure() }}

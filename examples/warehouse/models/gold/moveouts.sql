-- Tenants who have moved out (current SCD2 status), with where and when.
select
    h.tenant_id,
    n.tenant_name,
    n.building,
    n.room_number,
    n.notice_id,
    n.moveout_date,
    h.valid_from as recorded_on
from {{ ref('tenant_status_history') }} as h
join {{ ref('moveout_notices') }} as n
    on n.tenant_id = h.tenant_id and n.notice_state = 'completed'
where h.is_current = true
  and h.status = 'moved_out'
{{ inject_failure() }}

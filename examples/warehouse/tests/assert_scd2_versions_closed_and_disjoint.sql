-- Current versions are open (valid_to null); older versions are closed (valid_to set, not
-- before valid_from) and no two versions of a tenant overlap.
select tenant_id, valid_from, 'current version has valid_to' as problem
from {{ ref('tenant_status_history') }}
where is_current = true and valid_to is not null
union all
select tenant_id, valid_from, 'previous version not closed'
from {{ ref('tenant_status_history') }}
where is_current = false and (valid_to is null or valid_to < valid_from)
union all
select a.tenant_id, a.valid_from, 'overlapping versions'
from {{ ref('tenant_status_history') }} as a
join {{ ref('tenant_status_history') }} as b
    on b.tenant_id = a.tenant_id
   and b.valid_from > a.valid_from
   and (a.valid_to is null or a.valid_to >= b.valid_from)

-- Every tenant in tenant_status_history has exactly one current version.
select tenant_id, sum(case when is_current = true then 1 else 0 end) as current_versions
from {{ ref('tenant_status_history') }}
group by tenant_id
having sum(case when is_current = true then 1 else 0 end) <> 1

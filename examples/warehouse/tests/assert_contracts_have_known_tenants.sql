-- Every bronze contract belongs to a bronze tenant.
select c.contract_id, c.tenant_id
from {{ ref('raw_contracts') }} as c
left join {{ ref('raw_tenants') }} as t on t.tenant_id = c.tenant_id
where t.tenant_id is null

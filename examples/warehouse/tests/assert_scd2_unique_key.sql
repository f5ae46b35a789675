-- (tenant_id, valid_from), the incremental unique_key of tenant_status_history, is unique.
select tenant_id, valid_from, count(*) as n_rows
from {{ ref('tenant_status_history') }}
group by tenant_id, valid_from
having count(*) > 1

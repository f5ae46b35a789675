-- Every status in tenant_status_history is one the pipeline knows.
select tenant_id, valid_from, status
from {{ ref('tenant_status_history') }}
where status not in ('applicant', 'contracted', 'active', 'notice_given', 'moved_out')

{#-
  Opt in to etlguard's zero-copy snapshots of table models (docs/dbt.md): the table
  materialization of each adapter type this project runs on is etlguard_dbt's. Outside a guarded
  run with `dbt: {zero_copy: true}` it is dbt's stock table materialization, unchanged.
-#}
{% materialization table, adapter='duckdb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization table, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization table, adapter='mysql' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}

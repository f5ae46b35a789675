{#-
  Opt in to etlguard's zero-copy snapshots (docs/dbt.md): the table and incremental
  materializations of each adapter type this project runs on are etlguard_dbt's. Outside a
  guarded run with `dbt: {zero_copy: true}` they are dbt's stock materializations, unchanged.
  The incremental line matters only for runs with --full-refresh (or `full_refresh: true`).
-#}
{% materialization table, adapter='duckdb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization table, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization table, adapter='mysql' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization table, adapter='postgres' %}{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}
{% materialization incremental, adapter='duckdb' %}{{ return(etlguard_dbt.zero_copy_incremental()) }}{% endmaterialization %}
{% materialization incremental, adapter='mariadb' %}{{ return(etlguard_dbt.zero_copy_incremental()) }}{% endmaterialization %}
{% materialization incremental, adapter='mysql' %}{{ return(etlguard_dbt.zero_copy_incremental()) }}{% endmaterialization %}
{% materialization incremental, adapter='postgres' %}{{ return(etlguard_dbt.zero_copy_incremental()) }}{% endmaterialization %}

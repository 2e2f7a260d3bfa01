rule build_report:
    input:
        report_inputs(),
    output:
        R("report/index.html"),
    log:
        R("logs/build_report.log"),
    params:
        cfg=section("report"),
    localrule: True
    shell:
        "mtp report --config {CFG} 2>&1 | tee {log}"

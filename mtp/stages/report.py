"""`mtp report` (rule build_report): every file of the report under <results>/report/ (mtp.report), logged to the
study's MLflow parent run; prints the claims' verdicts."""
from mtp import config, report, tracking
from mtp.args import add_config_arg


def add_arguments(p):
    add_config_arg(p)
    p.add_argument("--no-tracking", action="store_true", help="do not log the report to the study's MLflow parent run")


def run(args):
    cfg = config.load(args.config)
    out, rows = report.build(cfg)
    if not args.no_tracking:
        tracking.log_parent_artifacts(cfg, out, "report")
    for r in rows:
        print(f"{r['verdict']:>18}  {r['claim']}")
    print(f"report: {out / 'index.html'}")

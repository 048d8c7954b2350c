"""``launcher pool up|status|down NAME``: the SkyPilot pool a run's workers can run on (thin: ``chunkpilot.control.pools``)."""

from __future__ import annotations

import os

import click


def register(cli: click.Group, handle_errors, console, err) -> None:
    """Add the ``pool`` command group to ``cli``."""

    @cli.group()
    def pool() -> None:
        """SkyPilot pools: warm machines whose setup ran once; `submit --pool NAME` runs workers on them.

        \b
        Examples:
          launcher pool up fleet --workers 4 --gpus H100:8      # setup (vLLM install) once per machine
          launcher submit s3://bkt/in/ --chunks 400 --backend sky --pool fleet --workers 32 ...
          launcher pool status fleet
          launcher pool down fleet
        """

    @pool.command("up")
    @click.argument("name")
    @click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Pool machines.")
    @click.option("--template", default=None, help="Task template YAML (default task_templates/vllm-spot.yaml).")
    @click.option("--gpus", default=None, help="Accelerators, e.g. H100:8 (overrides the template).")
    @click.option("--infra", "--cloud", "infra", default=None, help="Infra/cloud, e.g. aws or gcp/us-central1.")
    @click.option("--use-spot/--no-use-spot", default=None, help="Spot or on-demand machines.")
    @click.option("--image", default=None, metavar="DOCKER_IMAGE", help="A docker image to run on (setup skips vLLM where it has it).")
    @click.option("--secret", "secrets", multiple=True, metavar="NAME", help="Pass $NAME to the pool's setup as a secret.")
    @click.option("--dry-run", is_flag=True, help="Print the pool YAML (validated offline); apply nothing.")
    @handle_errors
    def up(name, workers, template, gpus, infra, use_spot, image, secrets, dry_run):
        """Create or update pool NAME from the task template (setup once per pool worker)."""
        import yaml

        from chunkpilot.control.pools import plan_pool, pool_up
        from chunkpilot.control.skytask import BlockDumper, TaskOptions, display_config, redact
        from chunkpilot.control.wheel import dist_dir

        options = TaskOptions(template=template, gpus=gpus, infra=infra, use_spot=use_spot, image=image,
                              secrets=tuple(secrets))
        plan = plan_pool(name, workers, options, os.environ, str(dist_dir(build=not dry_run)))
        text = yaml.dump(display_config(plan.config, plan.envs, plan.secrets), Dumper=BlockDumper, sort_keys=False,
                         default_flow_style=False, width=10_000).rstrip()
        if dry_run:
            console.print(redact(text, plan.secrets), markup=False)
            err.print(f"pool {name}: validated offline; dry run: nothing applied")
            return
        pool_up(plan)
        err.print(f"pool {name}: applied ({workers} worker(s)); `launcher pool status {name}` shows it")

    @pool.command("status")
    @click.argument("name", required=False)
    @handle_errors
    def status(name):
        """Show pool NAME (or every pool): status and workers ready."""
        from chunkpilot.control.pools import pool_status, status_lines

        rows = pool_status(name)
        console.print("\n".join(status_lines(rows)) or f"no pool {name or ''}".strip(), markup=False)

    @pool.command("down")
    @click.argument("name")
    @handle_errors
    def down(name):
        """Tear pool NAME down."""
        from chunkpilot.control.pools import pool_down

        pool_down(name)
        err.print(f"pool {name}: down")

from curate.cli.main import run

run()

"""placeholder"""
def setup_cli(subparsers):
    pass

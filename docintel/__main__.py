from docintel.cli.main import app

app()

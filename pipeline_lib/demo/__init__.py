"""Demo data: a seeded synthetic population of schools and students (`population`), realistic
typing mistakes (`dirt`), and the client that submits it to a running web app (`submit`)."""

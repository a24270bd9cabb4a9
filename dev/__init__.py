"""Development-only tooling: the local MediaWiki farm, demo models, `make run`. Not shipped in images."""

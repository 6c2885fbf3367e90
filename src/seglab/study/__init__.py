"""Studies: several runs under one protocol, compared honestly and reported."""

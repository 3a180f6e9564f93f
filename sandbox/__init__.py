"""A local AWS sandbox in which serverless design patterns run for real, offline."""

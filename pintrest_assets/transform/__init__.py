"""Transform: the cleaned tables, the nine answers about the posts, their checks and their daily refresh."""

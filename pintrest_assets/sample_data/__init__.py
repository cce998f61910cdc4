"""The sample posts database: the original's three tables, filled with realistic posts.

``schema`` declares the tables, ``generate`` makes the posts, ``seed`` writes them
(``pintrest seed``, from ``cli``), and ``engine`` opens the database with clear errors.
"""

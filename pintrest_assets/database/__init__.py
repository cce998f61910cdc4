"""The posts database: the original's three tables, and the sample posts that fill them.

``schema`` declares the tables, ``generate`` makes the posts, ``seed`` writes them
(``pintrest seed``), ``engine`` opens the database with clear errors, and ``resource`` is the
``PostsDatabase`` resource the emulation draws its random posts from.
"""

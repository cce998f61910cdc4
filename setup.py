from setuptools import find_packages, setup

setup(
    name="pintrest_assets",
    version="0.1.0",
    description="The Pinterest data pipeline as Dagster software-defined assets.",
    packages=find_packages(exclude=["pintrest_assets_tests*"]),
    package_data={"pintrest_assets.resources": ["*.properties"]},
    python_requires=">=3.11",
    install_requires=[
        # A matched set: newer dagster releases have no matching integrations yet.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-pyspark==0.29.27",
        "dagster-postgres==0.29.27",
        "pyspark[connect]>=4.0,<5",
        "pandas>=2.2,<3",  # pyspark 4 does not support pandas 3 yet
        "python-dotenv>=1.0",
        "SQLAlchemy>=2.0,<3",
        "pymysql>=1.1",
        "psycopg2-binary>=2.9",
        "requests>=2.31",
        "boto3>=1.34",
        "Faker>=30",
        "tqdm>=4.66",
        "PyYAML>=6",
        "matplotlib>=3.8",
        "deltalake==1.6.6",  # delta-rs: the warehouse's Delta tables, committed without a JVM
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "moto[server]>=5",
            "duckdb>=1.1",
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["pintrest=pintrest_assets.cli:main"]},
)

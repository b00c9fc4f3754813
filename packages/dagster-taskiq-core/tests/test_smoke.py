import dagster_taskiq


def test_package_imports() -> None:
    assert dagster_taskiq.__name__ == "dagster_taskiq"

"""The SQS contract suite: one set of tests run against the stub and against real servers.

Every semantic the stub promises has a test here. Where a real server deviates from AWS's
documented behaviour, the test carries ``sqs_deviation(emulator, reason=...)`` quoting the AWS
documentation, which the plugin turns into ``xfail(strict=True)`` on that emulator only.

Run it in any project that has dagster-taskiq-testing installed (with its ``servers`` extra)::

    pytest --pyargs dagster_taskiq_testing.contract
    pytest --pyargs dagster_taskiq_testing.contract --sqs-contract-emulators=stub,moto
"""

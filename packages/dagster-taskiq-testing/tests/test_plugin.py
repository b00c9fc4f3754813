"""The pytest plugin, exercised through pytester as another project would use it."""

from __future__ import annotations

import pathlib

import pytest

pytest_plugins = ["pytester"]
QUIET = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def test_user_test_runs_against_stub_and_moto(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from dagster_taskiq_testing.sqs_emulators import SqsEmulator

        def test_round_trip(sqs_emulator: SqsEmulator) -> None:
            sqs = sqs_emulator.client()
            url = sqs_emulator.create_queue("jobs")
            sqs.send_message(QueueUrl=url, MessageBody="hello")
            [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
            assert message["Body"] == "hello"

        def test_stub_fixtures(sqs_stub, sqs_clock) -> None:
            sqs = sqs_stub.client()
            url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=30)
            assert sqs_stub.delayed_messages("jobs")
            sqs_clock.advance(30)
            assert sqs_stub.visible_messages("jobs")
        """
    )
    result = pytester.runpytest_inprocess(*QUIET, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*test_round_trip?stub? PASSED*", "*test_round_trip?moto? PASSED*"]
    )


def test_deviation_marker_is_a_strict_xfail_on_that_backend_only(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.sqs_deviation("moto", reason="moto differs")
        def test_only_the_stub_passes(sqs_emulator) -> None:
            assert sqs_emulator.is_stub
        """
    )
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=1, xfailed=1)


def test_unknown_backend_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(sqs_emulator) -> None:\n    pass\n")
    result = pytester.runpytest_inprocess(*QUIET, "--sqs-emulators=stub,nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = pathlib.Path(__file__).parents[1] / "README.md"
    text = readme.read_text()
    start = text.index("# tests/test_step_queue.py\n")
    example = text[start : text.index("```", start)]
    pytester.makepyfile(test_step_queue=example)
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=4)

"""The run summary's rendering and verdict, on hand-made summaries."""

from pintrest_assets import run_summary


def _topic(**changes) -> dict:
    topic = {
        "topic": "u.pin", "sent": 10, "failed": 0, "landed": 10, "records_read": 10, "rows_read": 9,
        "quarantined": 1, "records_in_bucket": 30, "rows_total": 28, "quarantined_total": 2,
    }
    return {**topic, **changes}


def test_a_run_where_everything_landed_and_was_read_has_no_problems():
    summary = {"topics": {"pin": _topic()}, "checks": {"df_pin/records_reconciled": "passed", "x/y": "failed (WARN)"}}
    assert run_summary.problems(summary) == []


def test_problems_name_what_did_not_land_or_add_up_and_failed_error_checks():
    summary = {
        "topics": {"pin": _topic(landed=8), "geo": _topic(topic="u.geo", rows_read=8), "user": _topic(rows_total=20)},
        "checks": {"df_pin/records_reconciled": "failed (ERROR)", "pin_clean/join_coverage": "failed (WARN)"},
    }
    assert run_summary.problems(summary) == [
        "pin: 10 sent, 0 failed, 8 landed",
        "geo: 10 records read from new objects, but 8 rows + 1 quarantined",
        "user: 30 records in the bucket, but 20 rows + 2 quarantined in user's DataFrame",
        "check df_pin/records_reconciled failed (ERROR)",
    ]


def test_checks_line_counts_and_names_the_failures():
    assert run_summary.render_checks({"a/b": "passed", "c/d": "passed"}) == "checks: 2 passed, 0 failed"
    assert run_summary.render_checks({"a/b": "passed", "c/d": run_summary.check_result(False, "WARN")}) == (
        "checks: 1 passed, 1 failed: c/d failed (WARN)"
    )


def test_table_and_answers_read_as_columns():
    table = run_summary.render_table([_topic(sent=1200)]).splitlines()
    assert table[0].split() == ["topic", *run_summary.TABLE_COLUMNS]
    assert table[1].split() == ["u.pin", "1,200", "0", "10", "9", "1", "28"]
    answers = run_summary.render_answers(
        {"q": {"number": "3b", "question": "Which?", "rows": 1, "preview": [{"country": "Guernsey", "n": 8}]}}
    )
    assert answers.splitlines() == ["", "3b. Which? (1 row)", "   country | n", "   Guernsey | 8"]

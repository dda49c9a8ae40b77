"""`schoolgate check`: prove, group by group, that the running gateway filters as configured (the
illegal lists' test addresses, a known site of each blocked category, safe search, an education
page that must stay open), like SWGfL's Test Filtering but without fetching anything from the web.

Each canary is a real proxy request to the gateway's own listen address carrying the check header
(`answers`: the token the gateway writes to `<data_dir>/check-token`, and the group to decide
as). The gateway decides it through its real pipeline and answers every one itself
(`schoolgate.gateway.addons.check`): nothing is sent to a website. By job: `suite` (what to test
per group), `judging` (was the answer right), `probe` (the only network code), `run` (a run and
its table), `summary` (the governors' HTML), `timetable` (when the gateway runs it); the run's
record is `schoolgate.store.checks`.
"""

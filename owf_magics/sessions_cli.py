"""``owf sessions list`` and ``owf sessions prune``: the conversation sessions in a run store.

``owf sessions prune [--state PATH] [--max-items N] [--max-age 30d] [--session ID] [--json]``
drops messages older than ``--max-age``, then all but each session's newest ``--max-items``
(`OpenWorkflow.prune_sessions`), and prints how many went.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_list(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow

    frame = OpenWorkflow(state=args.state).sessions()
    if args.json:
        print(frame.to_json(orient="records", date_format="iso"))
        return 0
    print("no sessions stored" if frame.empty else frame.to_string(index=False))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow

    ow = OpenWorkflow(state=args.state)
    removed = ow.prune_sessions(max_items=args.max_items, max_age=args.max_age, session_id=args.session)
    left = ow.sessions()
    if args.json:
        print(json.dumps({"removed": removed, "sessions": len(left), "messages": int(left["messages"].sum())}))
    else:
        print(f"removed {removed} message(s); {len(left)} session(s), {int(left['messages'].sum())} message(s) kept")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sessions", help="list or prune the conversation sessions in the run store")
    ssub = p.add_subparsers(dest="sessions_command", required=True)
    pl = ssub.add_parser("list", help="one line per session: messages, agents, first and last use")
    pl.add_argument("--state", default=None, help="the run store (default .owf/runs.db)")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_list)
    pp = ssub.add_parser("prune", help="drop old messages (--max-age) and all but the newest (--max-items)")
    pp.add_argument("--state", default=None, help="the run store (default .owf/runs.db)")
    pp.add_argument("--max-items", type=int, default=None, metavar="N", help="keep each session's newest N messages")
    pp.add_argument("--max-age", default=None, metavar="AGE", help="drop messages older than AGE: seconds, 12h, 30d")
    pp.add_argument("--session", default=None, metavar="ID", help="only this session")
    pp.add_argument("--json", action="store_true")
    pp.set_defaults(func=cmd_prune)

"""The institution's ClientApp runner: the bank's own code, settings from the bank's own kit.

Flower 1.39's SuperNode, left to its default (``--isolation subprocess``),
starts ``flower-superexec``, which starts one ``flwr-clientapp`` per message;
that process installs the app bundle (FAB) the aggregator shipped and imports
the ClientApp from it, with the run configuration the aggregator chose. A
malicious aggregator then runs its own code at the bank.

``crossfed client`` instead starts the SuperNode with ``--isolation process``
(it runs no app itself and serves its Runtime API on 127.0.0.1) and this
long-lived runner beside it. The runner takes tasks from the SuperNode the way
Flower's SuperExec does and serves each one the way ``flwr-clientapp`` does,
with Flower's own functions (``AcquireTask``, :func:`pull_task_input`,
:func:`push_message`, :func:`push_task_output`, :class:`HeartbeatSender`), but

a. checks the bundle's content digest against the kit's app pin
   (:func:`~clients.app_guard.check_bundle`) and never installs or imports
   anything from it, whether it matches or not;
b. runs the ClientApp of the crossfed this machine has installed
   (:func:`clients.build_client_app`), imported once at start-up (which also
   saves the seconds of imports a fresh ``flwr-clientapp`` costs per message);
c. gives that app the kit's settings (:func:`~clients.app_guard.kit_settings`)
   and the bank's local paths, and refuses a task whose run configuration
   disagrees with the kit (:func:`~clients.app_guard.check_run_config`).

A refusal, or any failure of the app, replies with a fixed
:class:`~crossfed.protocol.ErrorCode` and its fixed text
(:func:`clients.error_mod.error_mod`); the details go to the bank's local log
(:mod:`clients.local_log`, a file of mode 0600). Run it as
``python -m clients.app_runner --kit KIT --data FILE --out DIR
--runtime-api-address HOST:PORT``; :func:`clients.run_institution` does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import SubStatus
from flwr.proto.runtime_pb2 import (  # pylint: disable=no-name-in-module
    AcquireTaskRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.auth import load_superexec_auth_secret
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.protobuf.client import ProtobufClientInterceptor
from flwr.supercore.retry import RetryInvoker, exponential
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import (
    pull_task_input,
    push_message,
    push_task_output,
)

from clients.app_guard import (
    RefusalError,
    check_bundle,
    check_run_config,
    kit_expectations,
    kit_settings,
)
from clients.client_app import build_client_app
from clients.error_mod import error_mod, error_reply
from clients.kit import InstitutionKit
from clients.local_log import institution_logger, open_local_log
from clients.refusal_count import RefusalBudget, RefusalCountBusyError
from clients.refusals import REFUSAL_FILE_KEY, kit_refusal_budget
from crossfed.protocol import ErrorCode, FederationSettings, reason_of

__all__ = ["AppRunner", "RunnerSetup", "main", "runner_setup"]

#: Seconds between two ``AcquireTask`` polls when the SuperNode has no task.
TASK_POLL_S = 0.5
#: How long one task's calls to the SuperNode retry a dropped connection.
TASK_RETRY_S = 60.0
#: The Runtime API methods SuperExec authentication guards (the runner calls one).
_AUTH_METHODS = frozenset({"/flwr.proto.Runtime/AcquireTask"})


@dataclass(frozen=True)
class RunnerSetup:
    """What the runner takes from the bank's kit and command line, never from the wire.

    Attributes
    ----------
    pin
        The app pin from the kit's ``federation.yaml``.
    settings
        The run's settings from the kit (:func:`~clients.app_guard.kit_settings`).
    expected
        The kit's values of the sovereign keys that are no run setting.
    node_config
        The node config the ClientApp sees: the institution's name, data file,
        schema, secret context, out dir.
    """

    pin: str
    settings: FederationSettings
    expected: dict[str, object]
    node_config: dict[str, str]


def runner_setup(
    kit: InstitutionKit, *, data_path: Path, out_dir: Path, refusal_file: Path | None = None
) -> RunnerSetup:
    """The runner's setup from a loaded kit and the bank's local paths.

    ``refusal_file`` is where refused aggregates are counted across runs
    (:mod:`clients.refusals`); None counts them in no file (per run only).

    Raises
    ------
    crossfed.protocol.ConfigurationError
        The kit's settings are invalid.
    """
    settings = kit_settings(kit, out_dir=out_dir)
    node_config = {
        "institution": kit.name,
        "data-path": str(data_path.resolve()),
        "schema": str(kit.schema),
        "secret-context": str(kit.secret_context),
        "out-dir": str(out_dir.resolve()),
    }
    if refusal_file is not None:
        node_config[REFUSAL_FILE_KEY] = str(refusal_file.resolve())
    if kit.manifest.masked:
        node_config["kit"] = str(kit.path.resolve())  # its agreement keys (clients.masking_keys)
    return RunnerSetup(kit.manifest.app_pin, settings, kit_expectations(kit), node_config)


def _retry_invoker(max_time: float | None, max_delay: int) -> RetryInvoker:
    """Retries of dropped connections and 503/504 answers; any other answer gives up.

    Flower's :func:`make_simple_http_retry_invoker` ends the whole process on a
    401 (right for a per-message ``flwr-clientapp``); the long-lived runner
    instead gives up on that call: a task's failure ends the task, a refused
    ``AcquireTask`` (wrong secret) ends the runner with the error named.
    """

    def give_up(exc: Exception) -> bool:
        if isinstance(exc, httpx.HTTPStatusError):
            return exc.response.status_code not in (
                httpx.codes.SERVICE_UNAVAILABLE,
                httpx.codes.GATEWAY_TIMEOUT,
            )
        return False

    return RetryInvoker(
        wait_gen_factory=lambda: exponential(max_delay=max_delay),
        recoverable_exceptions=(httpx.TransportError, httpx.HTTPStatusError),
        max_tries=None,
        max_time=max_time,
        should_giveup=give_up,
    )


class AppRunner:
    """Serves the SuperNode's ClientApp tasks with the bank's installed ClientApp.

    Parameters
    ----------
    setup
        The pin, settings and local paths from the kit (:func:`runner_setup`).
    client_app
        The ClientApp to run, built from the installed crossfed with ``setup.settings``.
    log
        Where refusals and failures are told in full; the institution's logger
        (:func:`clients.local_log.institution_logger`) by default.
    """

    def __init__(
        self, setup: RunnerSetup, client_app: ClientApp, log: logging.Logger | None = None
    ) -> None:
        self.setup = setup
        self.client_app = client_app
        self.log = log or institution_logger()
        self.tasks = 0

    def handle(self, message: Message, context: Context, run: Run, fab: Fab) -> Message:
        """The reply to one message: a refusal, or the installed ClientApp's reply.

        Nothing of ``fab`` is installed or imported; ``context.run_config`` is
        only compared with the kit, the app sees the kit's settings and the
        bank's node config. Never raises: a failure becomes an error reply with
        a fixed code, its details go to the local log.
        """
        kind = message.metadata.message_type
        try:
            digest = check_bundle(fab.content, self.setup.pin)
            check_run_config(context.run_config, self.setup.settings, self.setup.expected)
        except RefusalError as exc:
            self.log.error(
                "REFUSED %s message of run %s with %s: %s", kind, run.run_id, exc.code.name, exc
            )
            return error_reply(message, exc.code)
        self.log.info("accepted %s message of run %s (app bundle %s)", kind, run.run_id, digest)
        app_context = Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=dict(self.setup.node_config),
            state=context.state,  # the app's state persists through the SuperNode
            run_config=self.setup.settings.to_run_config(),
            series_id=context.series_id,
        )
        # Whatever the app raises or replies, only a fixed code crosses the wire.
        return error_mod(message, app_context, self.client_app)

    def run_task(self, runtime_address: str, token: str) -> None:
        """Serve one task the SuperNode handed out under ``token``.

        Mirrors ``flwr-clientapp``'s steps: heartbeats while it runs, pull the
        message, context, run and bundle, push the reply, then the task's status
        and the app's context state.
        """
        self.tasks += 1
        client = RuntimeHttpClient.from_server_address(
            server_address=runtime_address,
            insecure=True,
            root_certificates=None,
            interceptors=[
                RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                RuntimeTokenHttpInterceptor(token),
            ],
            retry_invoker=_retry_invoker(TASK_RETRY_S, max_delay=10),
        )
        heartbeat = HeartbeatSender(self._heartbeat(client))
        context: Context | None = None
        status, details = SubStatus.FAILED, reason_of(ErrorCode.INTERNAL)
        try:
            heartbeat.start()
            message, context, run, fab = pull_task_input(client)
            reply = self.handle(message, context, run, fab)
            push_message(client, reply, context)
            if not reply.has_error():
                status, details = SubStatus.COMPLETED, ""
            else:
                status, details = SubStatus.FAILED, reply.error.reason or details
        except Exception:  # a broken task must not stop the runner
            self.log.exception("task %d could not be served", self.tasks)
        finally:
            try:
                push_task_output(client=client, context=context, sub_status=status, details=details)
            except Exception:  # the SuperNode went away: nothing left to tell it
                self.log.exception("task %d: could not report its status", self.tasks)
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()

    def _heartbeat(self, client: RuntimeHttpClient) -> Callable[[], bool]:
        """Flower's task heartbeat, without ending the process when a task expired."""
        request = SendTaskHeartbeatRequest()

        def beat() -> bool:
            try:
                if not client.SendTaskHeartbeat(request).success:
                    self.log.warning("task %d: the SuperNode no longer knows it", self.tasks)
            except httpx.TransportError:
                return False
            except httpx.HTTPError as exc:
                self.log.warning("task %d: heartbeat refused (%s)", self.tasks, exc)
            return True

        return beat

    def serve(
        self,
        runtime_address: str,
        *,
        auth_secret: bytes | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Take and serve ClientApp tasks until ``stop`` is set (or forever).

        Parameters
        ----------
        runtime_address
            The SuperNode's Runtime API (``--isolation process``), ``HOST:PORT``.
        auth_secret
            The SuperExec secret both the SuperNode and the runner read
            (``--superexec-auth-secret-file``): only its holder may take tasks.
        stop
            Set to end the loop after the current task.
        """
        interceptors: list[ProtobufClientInterceptor] = [
            RuntimeVersionHttpInterceptor(component_name="SuperExec")
        ]
        if auth_secret:
            interceptors.append(
                SuperExecAuthHttpInterceptor(
                    master_secret=auth_secret, protected_methods=_AUTH_METHODS
                )
            )
        acquirer = RuntimeHttpClient.from_server_address(
            server_address=runtime_address,
            insecure=True,
            root_certificates=None,
            interceptors=interceptors,
            # The SuperNode may be (re)starting: retry its address, briefly apart.
            retry_invoker=_retry_invoker(None, max_delay=2),
        )
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        halt = stop or threading.Event()
        try:
            while not halt.is_set():
                acquired = acquirer.AcquireTask(request)
                if acquired.HasField("task") and acquired.token:
                    self.run_task(runtime_address, acquired.token)
                    continue
                halt.wait(TASK_POLL_S)
        finally:
            acquirer.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m clients.app_runner",
        description="Serve a SuperNode's ClientApp tasks with this installation's crossfed.",
    )
    parser.add_argument("--kit", type=Path, required=True, help="The institution's kit.")
    parser.add_argument("--data", type=Path, required=True, help="The institution's data.")
    parser.add_argument("--out", type=Path, required=True, help="Where outputs go.")
    parser.add_argument(
        "--runtime-api-address", required=True, help="The SuperNode's Runtime API, HOST:PORT."
    )
    parser.add_argument(
        "--superexec-auth-secret-file", default=None, help="Secret shared with the SuperNode."
    )
    parser.add_argument("--log-file", type=Path, required=True, help="The local log (0600).")
    parser.add_argument(
        "--refusal-file",
        type=Path,
        default=None,
        help="The count of refused aggregates (0600; default: in the kit, named for its key).",
    )
    parser.add_argument("--parent-pid", type=int, default=None, help="Exit when it exits.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m clients.app_runner``; returns the exit status."""
    args = _parse_args(argv)
    handler = open_local_log(args.log_file)
    try:
        return _run(args, institution_logger())
    finally:
        institution_logger().removeHandler(handler)
        handler.close()


def _run(args: argparse.Namespace, log: logging.Logger) -> int:
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    try:
        kit = InstitutionKit.load(args.kit)
        refusals = args.refusal_file or kit_refusal_budget(kit).path
        setup = runner_setup(kit, data_path=args.data, out_dir=args.out, refusal_file=refusals)
        secret = load_superexec_auth_secret(args.superexec_auth_secret_file)
    except Exception as exc:
        log.exception("the runner cannot start")
        print(f"crossfed app runner: cannot start: {exc}", file=sys.stderr)
        return 2
    if not setup.pin:
        log.error("the kit %s pins no app bundle: recreate it with `crossfed kit create`", kit.path)
        print("crossfed app runner: the kit pins no app bundle", file=sys.stderr)
        return 2
    runner = AppRunner(setup, build_client_app(settings=setup.settings), log)
    log.info("runner ready for %s (pin %s)", kit.name, setup.pin)
    print("crossfed app runner: ready", flush=True)
    with ExitStack() as held:
        try:
            # One process at a time decrypts under this key's budget: nothing slips between
            # the check before a decryption and the count after it (red team R7).
            held.enter_context(RefusalBudget(refusals).claim())
        except (RefusalCountBusyError, OSError) as exc:
            log.error("the runner cannot hold the refusal count: %s", exc)
            print(f"crossfed app runner: cannot start: {exc}", file=sys.stderr)
            return 2
        try:
            runner.serve(args.runtime_api_address, auth_secret=secret)
        except KeyboardInterrupt:
            return 0
        except Exception as exc:  # the SuperNode refused the runner: say why, locally
            log.exception("the runner stopped")
            print(f"crossfed app runner: stopped: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

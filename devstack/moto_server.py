"""moto's server, with writes to one DynamoDB item serialised.

DynamoDB applies a conditional write to an item atomically; moto checks the condition and then
applies the update with no lock, and its server handles requests on threads. Two concurrent
writes to one item can then both pass their conditions, or the second can replace an item the
first just created (seen: 1 of 320 concurrent list_appends lost), which real DynamoDB never
does and which the call store's idempotency relies on. This wrapper takes a lock per
(table, key) around each single-item write, as DynamoDB serialises them; writes to other items
and every other request stay concurrent, so throughput is moto's own.

It also makes one moto cost linear again: for every message a receive hands out, moto builds
all of the queue's attributes (three scans of the queue) to read its retention period, so a
receive costs O(depth x batch) and a backlog of a few thousand messages (the chaos run's)
slows the emulator to a few requests per second. The patch reads the one setting directly.

Two more of moto's costs, found with py-spy under the chaos run's backlog after a minute of
SQS down: every request lists moto's package directory (`list_of_moto_modules`, about 150
`isdir` calls) while holding the dispatcher's one lock, so requests queue behind each other;
and every SendMessage builds all of the queue's attributes (three scans of it) to read
`ContentBasedDeduplication`. The directory listing is cached (it never changes while the
server runs), and a send builds the attributes without the three counts it never reads.

More, found with py-spy once the local stack started a Lambda instance per request in flight
(so more requests reach moto at once, as they reach AWS):
- every backend lookup took moto's one global lock (`BackendDict.__getitem__`), and PutItem a
  lock on its whole table: an account's backend found in the dict is returned without the
  lock, and a PutItem locks only its item (the key attributes of the table's schema);
- every receive tested each message of the queue for visibility and delay through naive
  datetimes, and every delete walked the queue building receipt-handle lists: half of moto's
  time. Both now read the clock once and compare;
- a Query on the table's key gathered and sorted the whole table: it reads its partition;
- every conditional write lexed its ConditionExpression and parsed its UpdateExpression again:
  each text is lexed and parsed once;
- werkzeug's development server closes every connection, so each request was a new connection
  and a new thread, accepted by one thread behind the GIL: the server is waitress, which keeps
  connections alive as AWS does (see `_serve`);
- requests are served at most 4 at a time, background work at most 2 of them
  (`DEVSTACK_EMULATOR_SLOTS`, `DEVSTACK_EMULATOR_BACKGROUND_SLOTS`; moto runs under the GIL,
  so more only convoy), long-polled receives apart, a webhook's first (see `_Slots`), and one
  whose caller hung up while it waited is dropped unserved. A line a minute,
  `EMULATOR-LOAD`, says how much it served, by class (webhook, background, long poll), and
  how long each waited for a slot and was served (p50, p99).

And it closes a race that loses messages: moto's `Queue.delete_message` rebuilds the queue's
message list from a copy, so a message another thread adds meanwhile is dropped (the likely
cause of two events a chaos run's webhooks had queued and no worker ever received, with a
backlog of thousands making the copy slow). SQS never loses an accepted message; adding and
deleting now take the queue's lock.

Two things let the local stack be made by CloudFormation from infra/template.yaml:

- moto's CloudFormation has no model for `AWS::SecretsManager::Secret` (its `Ref` resolves to
  nothing, and the policies naming the secret are then refused as "Policy statement must
  contain resources"). `_CfnSecret` is that model: the secret as Secrets Manager makes it
  (`GenerateSecretString` included), its ARN as `Ref`, as the resource's documentation says
  (AWS::SecretsManager::Secret, "Return values").
- moto runs an SQS event source mapping itself: each SendMessage receives a batch and invokes
  the function (in Docker, which is not here), deleting the messages. On AWS it is Lambda's
  pollers that do this, and locally it is devstack's (devstack/src/poller.rs, configured from
  the mappings the stack made), so a queue never hands its messages to moto's invoker.
- CloudFormation passes a function's environment to Lambda as strings (Lambda's
  `Environment.Variables` is a map of strings; `MaxReceiveCount` is a Number parameter), where
  moto keeps the number and answers GetFunctionConfiguration with it, which no SDK reads.

And it makes IAM enforcement (moto's `INITIAL_NO_AUTH_ACTION_COUNT`, which devstack turns on
with `POST /moto-api/reset-auth` once the stack is deployed) judge a request as IAM does for
the calls this project makes, where moto 5.2.5 does not:

- moto names the resource of a request only for SQS, S3 and IAM; for every other service it
  asks about `*`, which no statement with a resource ARN matches, so every least-privilege
  policy is refused. `_RESOURCES` names the resource for DynamoDB (the table), Secrets Manager
  (the secret's ARN, whatever id the caller gave), Lambda (the function) and Transcribe (the
  job), as their "Actions, resources, and condition keys" pages in the Service Authorization
  Reference define them. For a request whose resource is still unknown, only the action is
  checked (any statement's resource matches).
- moto evaluates a statement's `Condition` as a trust policy's and answers an unmet condition
  of an Allow with a Deny of the whole request. In IAM an Allow whose condition does not hold
  simply does not apply ("Policy evaluation logic", IAM User Guide). `_permitted` evaluates
  identity policies so: an explicit Deny wins, else an applicable Allow is needed; the
  condition operators the template uses (`StringLike`, `StringEquals`, `ArnLike`, `ArnEquals`,
  `Bool`, with `ForAllValues:`/`ForAnyValue:` and `...IfExists`) over the keys it reads from
  the request (`s3:prefix`, `dynamodb:LeadingKeys`); a key the request does not carry fails a
  condition, as in IAM, except under `ForAllValues:`.
- moto signs a Lambda GET again over its parsed headers as if they were the body, so every
  signed Lambda GET (GetFunctionConfiguration) fails as SignatureDoesNotMatch; a request with
  no body is signed over an empty payload, as SigV4 defines it.
- moto asks for `sqs:DeleteMessageBatch` (and the other batch actions) where IAM asks for the
  single action: "You cannot set permissions explicitly for SendMessageBatch,
  DeleteMessageBatch, or ChangeMessageVisibilityBatch" (SQS Developer Guide, "Amazon SQS
  batch actions"). `_SINGLE_ACTIONS` maps them back.
- AWS-managed policies attached to a role (the functions' `AWSLambdaBasicExecutionRole`) are
  read from their default version.

And CloudFormation's `AWS::Serverless-2016-10-31` transform, which moto does not apply: a
template that names it (what `sam deploy` sends in its change set) is translated with the
pinned aws-sam-translator (devstack/sam_translate.py) before moto creates the stack, as
CloudFormation does with a transform ("AWS::Serverless transform", CloudFormation User Guide).
That is what lets `make deploy-rehearsal` run `sam deploy` against the emulator; moto reads
a TemplateURL on a loopback endpoint (`http://127.0.0.1:PORT/bucket/key`, what SAM CLI sends
with AWS_ENDPOINT_URL set) path-style, as it already does for `localhost`.

And S3's checksums: S3 computes the checksum a PutObject or UploadPart names
(`x-amz-checksum-sha256`, …) over the body it received and refuses a mismatch with 400
`BadDigest`, "The SHA256 you specified did not match the calculated checksum.", storing nothing
("Checking object integrity", S3 User Guide). moto echoes the value unchecked ("TODO: AWS
computes the provided value and verifies it's the same"), so a wrong checksum would pass here
and fail on AWS. `_verifying_checksum` checks it before moto stores anything.

It also answers `GET /__devstack/id` with $DEVSTACK_EMULATOR_ID, so that the harness knows the
server on its port is the one it started (another test may have taken the port first).

Run with the arguments of `moto_server` (-H HOST -p PORT).
"""

import io
import json
import os
import sys
import threading
import time
from collections import defaultdict, deque

from moto import backends
from moto.awslambda.models import LambdaFunction
from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends
from moto.core.utils import unix_time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Queue, SQSBackend

ITEM_WRITES = {"DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.PutItem", "DynamoDB_20120810.DeleteItem"}

_guard = threading.Lock()
_item_locks = defaultdict(threading.Lock)
_dispatch = DomainDispatcherApplication.__call__


def _item_lock(environ):
    if environ.get("HTTP_X_AMZ_TARGET") not in ITEM_WRITES:
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        request = json.loads(body)
        table = request["TableName"]
        # PutItem carries the whole item: its key is the table's key attributes of it (two
        # puts of one key must serialise; locking on the whole item would not). When the
        # table's schema is unknown, the whole table is locked.
        key = request.get("Key") or _key_of(table, request.get("Item"))
        name = (table, json.dumps(key, sort_keys=True) if key is not None else "")
    except (ValueError, KeyError, TypeError):
        return None
    with _guard:
        return _item_locks[name]


_key_attributes = {}


def _key_of(table, item):
    """The key of `item` in `table` (its hash and range attributes), or None."""
    if not isinstance(item, dict):
        return None
    names = _key_attributes.get(table)
    if names is None:
        from moto.dynamodb.models import dynamodb_backends

        for account in list(dynamodb_backends.values()):
            for backend in list(account.values()):
                found = backend.tables.get(table)
                if found is not None:
                    names = tuple(n for n in (found.hash_key_attr, found.range_key_attr) if n)
        if not names:
            return None
        _key_attributes[table] = names
    return {name: item.get(name) for name in names}


# How many requests moto works on at once. It runs Python under one lock (the GIL), so more
# threads only take turns; every request gets a thread, and when the stack's callers outnumber
# what moto serves, hundreds of them convoy on the GIL and moto's own locks while their
# callers time out. A request past the limit waits for a slot without running, and one whose
# caller gave up meanwhile is dropped unserved (a real service's work for it would be wasted
# too). Long-polled receives wait inside moto, so they never take a slot.
class _Slots:
    """Requests moto works on at once: `urgent` in all, of which background work at most
    `background`; a waiting webhook's request is let in before any other.

    A webhook answers a caller who waits (Twilio's read timeout, a caller on the line) with
    one SQS send or one spill write, which AWS serves in milliseconds at any load; the
    workers, pollers and drainer behind it are background work that AWS would serve as fast.
    One Python process cannot serve both as AWS does once a run outgrows it: it runs one
    request at a time (the GIL), so each request admitted slows the others. It serves the
    waiting caller first, with few background requests beside it: webhooks see close to
    AWS's latency, and the backlog a real stack would not have lands where it delays nothing
    promised."""

    def __init__(self, urgent, background):
        self._total, self._background = urgent, background
        self._busy = 0
        self._busy_background = 0
        self._lock = threading.Lock()
        # Waiting requests, first come first served: each is woken alone, its slot already
        # taken for it (a condition notified for all woke every waiter on every release, a
        # herd that cost more than the requests under load).
        self._waiting = (deque(), deque())  # (webhooks, background)

    def _fits(self, urgent):
        if self._busy >= self._total:
            return False
        return urgent or self._busy_background < self._background

    def _take(self, urgent):
        self._busy += 1
        self._busy_background += 0 if urgent else 1

    def acquire(self, urgent):
        queue = self._waiting[0 if urgent else 1]
        with self._lock:
            if self._fits(urgent) and not self._waiting[0] and not queue:
                self._take(urgent)
                return
            woken = threading.Event()
            queue.append(woken)
        woken.wait()

    def release(self, urgent):
        with self._lock:
            self._busy -= 1
            self._busy_background -= 0 if urgent else 1
            webhooks, background = self._waiting
            while webhooks and self._fits(True):
                self._take(True)
                webhooks.popleft().set()
            while background and not webhooks and self._fits(False):
                self._take(False)
                background.popleft().set()


_slots = _Slots(
    int(os.environ.get("DEVSTACK_EMULATOR_SLOTS", "4")),
    int(os.environ.get("DEVSTACK_EMULATOR_BACKGROUND_SLOTS", "2")),
)
_LONG_POLLS = {"AmazonSQS.ReceiveMessage"}
_urgent_keys = {}


class _Load:
    """What the emulator served in the last minute, by class (webhook, background, long
    poll): how many, how long they waited for a slot and how long they were served."""

    def __init__(self):
        self._lock = threading.Lock()
        self.in_flight = 0
        self._reset()

    def _reset(self):
        self.abandoned = 0
        # class -> [(waited, served)] in ms: a minute's requests at most, then reset.
        self.times = defaultdict(list)

    def admitting(self, delta):
        """One more (+1) or one fewer (-1) request admitted and not yet done."""
        with self._lock:
            self.in_flight += delta

    def gave_up(self):
        with self._lock:
            self.abandoned += 1

    def record(self, kind, waited, served):
        with self._lock:
            self.times[kind].append((waited * 1000.0, served * 1000.0))

    def report(self):
        """One line, and a new minute."""
        with self._lock:
            times, abandoned, in_flight = self.times, self.abandoned, self.in_flight
            self._reset()

        def pct(values, q):
            return values[min(len(values) - 1, int(len(values) * q))] if values else 0.0

        parts = []
        for kind in sorted(times):
            waited = sorted(w for w, _ in times[kind])
            served = sorted(s for _, s in times[kind])
            parts.append(
                f"{kind}={len(served)} wait_p50={pct(waited, 0.5):.0f}ms "
                f"wait_p99={pct(waited, 0.99):.0f}ms serve_p50={pct(served, 0.5):.0f}ms "
                f"serve_p99={pct(served, 0.99):.0f}ms"
            )
        return f"EMULATOR-LOAD {' '.join(parts)} abandoned={abandoned} in_flight={in_flight}"


_load = _Load()


def _urgent(environ):
    """Whether the request comes from a webhook function (its role's name says so)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    key = auth.split("Credential=", 1)[-1].split("/", 1)[0] if "Credential=" in auth else ""
    known = _urgent_keys.get(key)
    if known is not None:
        return known
    from moto.sts.models import sts_backends

    urgent = False
    for account in list(sts_backends.values()):
        for backend in list(account.values()):
            for role in list(backend.assumed_roles):
                if role.access_key_id == key:
                    urgent = "Webhook" in role.role_arn.rsplit("/", 1)[-1]
    _urgent_keys[key] = urgent
    return urgent


def _abandoned(environ):
    """Whether the caller closed its connection while the request waited for a slot."""
    disconnected = environ.get("waitress.client_disconnected")
    return bool(disconnected and disconnected())


def _report_load():
    """A line a minute on stderr: what the emulator served and how long requests waited, so
    a run's log says how close to its capacity the local stack was."""
    while True:
        time.sleep(60)
        print(_load.report(), file=sys.stderr, flush=True)


def _serialised(self, environ, start_response):
    if environ.get("PATH_INFO") == "/__devstack/id":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [os.environ.get("DEVSTACK_EMULATOR_ID", "").encode()]
    arrived = time.monotonic()
    if environ.get("HTTP_X_AMZ_TARGET") in _LONG_POLLS:
        try:
            return _served(self, environ, start_response)
        finally:
            _load.record("poll", 0.0, time.monotonic() - arrived)
    urgent = _urgent(environ)
    _load.admitting(+1)
    _slots.acquire(urgent)
    admitted = time.monotonic()
    try:
        if _abandoned(environ):
            _load.gave_up()
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the caller gave up before the emulator got to it"]
        return _served(self, environ, start_response)
    finally:
        _slots.release(urgent)
        _load.admitting(-1)
        _load.record(
            "webhook" if urgent else "background", admitted - arrived, time.monotonic() - admitted
        )


def _served(self, environ, start_response):
    lock = _item_lock(environ)
    if lock is None:
        return list(_dispatch(self, environ, start_response))
    with lock:
        # Materialise the response inside the lock: the backend may run lazily.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialised

# Every backend lookup (several per request: the service's, IAM's for authorization and for
# "last used") goes through BackendDict.__getitem__, which takes moto's one global lock and
# scans a list to make sure the account's backend exists, though it almost always does. Under
# the chaos run's load that lock was where hundreds of request threads waited (py-spy), and a
# client that gave up left its thread queued behind it. An account's backend, once made, stays
# until a reset, which clears the dict and the list together, so finding it in the dict is
# enough to skip the lock.
from moto.core.base_backend import BackendDict

_backend_of_account = BackendDict.__getitem__


def _existing_backend_first(self, account_id):
    backend = dict.get(self, account_id)
    return backend if backend is not None else _backend_of_account(self, account_id)


BackendDict.__getitem__ = _existing_backend_first


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention

_modules = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _modules

_sending = threading.local()
_attributes = Queue.attributes.fget
_send_message = SQSBackend.send_message


def _cheap_attributes(self):
    if not getattr(_sending, "active", False):
        return _attributes(self)
    # All a send reads of them (moto/sqs/models.py, send_message): no scan of the queue.
    if self.fifo_queue:
        return {"ContentBasedDeduplication": str(self.content_based_deduplication).lower()}
    return {}


def _send(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


Queue.attributes = property(_cheap_attributes)
SQSBackend.send_message = _send

_queue_locks = defaultdict(threading.RLock)


def _locked(method):
    def run(self, *args, **kwargs):
        with _guard:
            lock = _queue_locks[id(self)]
        with lock:
            return method(self, *args, **kwargs)

    return run


# Reading the clock, and finding a receipt handle, were half of moto's time in a chaos run
# (py-spy): every receive tests each message of the queue for visibility and delay, and each
# test reads the clock through naive datetimes (two imports, two datetimes and a subtraction);
# every delete walks the queue twice building each message's list of receipt handles. A
# receive now reads the clock once and compares; a delete looks its handle up (below): the
# same answers, in a fraction of the time.
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message


def _now_ms():
    return time.time() * 1000.0


Message.visible = property(lambda self: _now_ms() > self.visible_at)
Message.delayed = property(lambda self: _now_ms() < self.delayed_until)


def _is_ready(message, now):
    return now > message.visible_at and not now < message.delayed_until


def _ready_messages(self):
    now = _now_ms()
    return [m for m in self._messages if _is_ready(m, now)]


Queue.messages = property(_ready_messages)


# A long-polled receive waits on the queue's condition, which every send notifies, and moto's
# wait re-tests `queue.messages` on each wake: a list of every ready message, built by testing
# each message of the queue. After an outage the queues hold thousands of messages in flight,
# and a dozen pollers woken by each of a hundred sends a second tested them all, under the GIL
# and outside the slots, stalling every other request. A wake only needs to know whether one
# message is ready, and a send's message is the newest: tested newest first, it is found at once.
def _any_ready(self):
    now = _now_ms()
    return any(_is_ready(m, now) for m in reversed(self._messages))


def _wait_for_messages(self, timeout):
    with self._messages_lock:
        self._messages_lock.wait_for(lambda: _any_ready(self), timeout=timeout)


Queue.wait_for_messages = _wait_for_messages


# Every receipt handle a message was given, to the message: a delete finds its message at
# once instead of testing each message of the queue (a Python call per message, a third of
# moto's time in a chaos run's backlog, py-spy). Handles are random and never reused; a
# deleted message's are dropped with it.
_by_handle = {}
_mark_received = Message.mark_received


def _mark_received_indexed(self, *args, **kwargs):
    _mark_received(self, *args, **kwargs)
    _by_handle[self.receipt_handle] = self


def _delete_message(self, receipt_handle):
    if receipt_handle in self.deleted_messages:
        # Already deleted: SQS answers success again.
        return
    message = _by_handle.get(receipt_handle)
    # `in` and `remove` compare by identity first (messages define no __eq__): no Python per
    # message. A handle of a message now on another queue (moved to its DLQ) is invalid here.
    if message is None or message not in self._messages:
        raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    for handle in message.all_receipt_handles:
        _by_handle.pop(handle, None)
    self._messages.remove(message)


Message.mark_received = _mark_received_indexed
Queue.add_message = _locked(Queue.add_message)
Queue.delete_message = _locked(_delete_message)

# A Query on a table's key reads one partition on DynamoDB; moto gathers and sorts every item of
# the table for each one (`Table.all_items`), so a room event's Query grew with the whole calls
# table. The query on the table's own key now gathers only its partition, in the same order.
from moto.dynamodb.models.table import Table

_partition = threading.local()
_all_items = Table.all_items
_query = Table.query


def _partition_items(self):
    hash_key = getattr(_partition, "hash_key", None)
    if hash_key is None or getattr(_partition, "table", None) is not self:
        return _all_items(self)
    found = self.items.get(hash_key)
    if found is None:
        return []
    items = list(found.values()) if self.range_key_attr else [found]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _query_one_partition(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None or hash_key is None:
        return _query(self, hash_key, *args, **kwargs)
    _partition.table, _partition.hash_key = self, hash_key
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _partition.table, _partition.hash_key = None, None


Table.all_items = _partition_items
Table.query = _query_one_partition

# Every conditional write lexes its ConditionExpression again, a third of moto's time in an
# UpdateItem (py-spy). The tokens depend on the expression's text alone (names and values are
# resolved after) and are tuples, never changed: each text is lexed once.
from moto.dynamodb.comparisons import ConditionExpressionParser

_lexed = {}
_lex = ConditionExpressionParser._lex_condition_expression


def _lex_once(self):
    text = self.condition_expression
    tokens = _lexed.get(text)
    if tokens is None:
        tokens = tuple(_lex(self))
        if len(_lexed) < 4096:  # a stack writes a handful of expressions; a bound all the same
            _lexed[text] = tokens
    return deque(tokens)


ConditionExpressionParser._lex_condition_expression = _lex_once

# And every UpdateItem parsed its UpdateExpression twice (the handler, to check its names and
# values; the backend, to apply it) and copied the tree with `copy.deepcopy` for its validator,
# which rewrites its copy in place: a third of an UpdateItem (py-spy). The tree depends on the
# text alone and nothing changes it but the validator's copy, so each text is parsed once and
# shared, and the validator copies it by hand (a parsed tree holds only nodes, lists of them
# and strings; `deepcopy` cost as much as the parse). A tree that holds anything else is
# neither cached nor copied by hand.
from moto.dynamodb.parsing.ast_nodes import Node
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.dynamodb.parsing.validators import Validator

_parsed = {}
_shared = set()  # ids of the cached trees
_make = UpdateExpressionParser.make.__func__
_validator_init = Validator.__init__


def _plain(node):
    if not isinstance(node, Node):
        return isinstance(node, str)
    if set(vars(node)) != {"type", "children", "parent"}:
        return False
    return node.children is None or all(_plain(c) for c in node.children)


def _copy_tree(node, parent=None):
    if not isinstance(node, Node):
        return node
    copied = object.__new__(type(node))
    copied.__dict__ = dict(vars(node), parent=parent)
    if node.children is not None:
        copied.children = [_copy_tree(c, copied) for c in node.children]
    return copied


def _make_once(cls, expression):
    tree = _parsed.get(expression)
    if tree is None:
        tree = _make(cls, expression)
        if _plain(tree) and len(_parsed) < 4096:  # a stack writes a handful; bounded all the same
            _parsed[expression] = tree
            _shared.add(id(tree))
    return tree


def _validator_copying_by_hand(self, expression, *args, **kwargs):
    if id(expression) not in _shared:
        return _validator_init(self, expression, *args, **kwargs)
    # The original, less its deepcopy of a shared tree: validated on a copy made by hand.
    _validator_init(self, None, *args, **kwargs)
    self.node_to_validate = _copy_tree(expression)


UpdateExpressionParser.make = classmethod(_make_once)
Validator.__init__ = _validator_copying_by_hand



class _CfnSecret(CloudFormationModel):
    """AWS::SecretsManager::Secret for moto's CloudFormation (moto 5.2.5 has none)."""

    # moto's model metaclass files each model under the service its module names.
    __module__ = "moto.secretsmanager.cloudformation"

    def __init__(self, account_id, region_name, arn, name):
        self.account_id = account_id
        self.region_name = region_name
        self.arn = arn
        self.name = name

    @staticmethod
    def cloudformation_name_type():
        return "Name"

    @staticmethod
    def cloudformation_type():
        return "AWS::SecretsManager::Secret"

    @property
    def physical_resource_id(self):
        return self.arn

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name):
        return self.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = secretsmanager_backends[account_id][region_name]
        secret_string = properties.get("SecretString")
        generate = properties.get("GenerateSecretString")
        if generate is not None:
            password = json.loads(
                backend.get_random_password(
                    password_length=int(generate.get("PasswordLength", 32)),
                    exclude_characters=generate.get("ExcludeCharacters", ""),
                    exclude_numbers=_flag(generate, "ExcludeNumbers"),
                    exclude_punctuation=_flag(generate, "ExcludePunctuation"),
                    exclude_uppercase=_flag(generate, "ExcludeUppercase"),
                    exclude_lowercase=_flag(generate, "ExcludeLowercase"),
                    include_space=_flag(generate, "IncludeSpace"),
                    require_each_included_type=_flag(generate, "RequireEachIncludedType", True),
                )
            )["RandomPassword"]
            if "SecretStringTemplate" in generate:
                secret = json.loads(generate["SecretStringTemplate"])
                secret[generate["GenerateStringKey"]] = password
                secret_string = json.dumps(secret)
            else:
                secret_string = password
        created = json.loads(
            backend.create_secret(
                name=resource_name,
                secret_string=secret_string,
                secret_binary=None,
                description=properties.get("Description"),
                tags=properties.get("Tags"),
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
        )
        return cls(account_id, region_name, created["ARN"], resource_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        secretsmanager_backends[account_id][region_name].delete_secret(
            resource_name, recovery_window_in_days=None, force_delete_without_recovery=True
        )


def _flag(properties, name, default=False):
    value = properties.get(name, default)
    return value if isinstance(value, bool) else str(value).lower() == "true"


class _NoMotoInvoker(dict):
    """A queue's event source mappings, as moto's SQS sees them: none (see the docstring)."""

    def __setitem__(self, key, value):
        pass


Queue.lambda_event_source_mappings = property(lambda self: _NoMotoInvoker(), lambda self, value: None)

_create_function = LambdaFunction.create_from_cloudformation_json.__func__


def _function_with_string_environment(cls, resource_name, cloudformation_json, *args, **kwargs):
    variables = cloudformation_json.get("Properties", {}).get("Environment", {}).get("Variables")
    if variables:
        for name, value in variables.items():
            if isinstance(value, bool):
                variables[name] = str(value).lower()
            elif not isinstance(value, str):
                variables[name] = str(value)
    return _create_function(cls, resource_name, cloudformation_json, *args, **kwargs)


LambdaFunction.create_from_cloudformation_json = classmethod(_function_with_string_environment)

# ---------------------------------------------------------------- IAM (see the docstring)
import functools
import re
from urllib.parse import parse_qs, urlparse

from moto.awslambda.responses import LambdaResponse
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMRequestBase
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.transcribe.responses import TranscribeResponse


def _json_body(response):
    try:
        return json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}


def _table_resource(self):
    name = _json_body(self).get("TableName")
    if not name:
        return "*"
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{name}"


def _secret_resource(self):
    secret_id = _json_body(self).get("SecretId")
    try:
        return secretsmanager_backends[self.current_account][self.region].secrets[secret_id].arn
    except (KeyError, TypeError):
        return "*"


def _function_resource(self):
    match = re.match(r"^/20\d\d-\d\d-\d\d/functions/([^/]+)", urlparse(self.uri).path)
    if not match:
        return "*"
    name = match.group(1).split(":")[-1] if match.group(1).startswith("arn:") else match.group(1)
    return f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"


def _job_resource(self):
    name = _json_body(self).get("TranscriptionJobName")
    if not name:
        return "*"
    return f"arn:aws:transcribe:{self.region}:{self.current_account}:transcription-job/{name}"


DynamoHandler._determine_resource = _table_resource
SecretsManagerResponse._determine_resource = _secret_resource
LambdaResponse._determine_resource = _function_resource
TranscribeResponse._determine_resource = _job_resource


@functools.lru_cache(maxsize=1024)
def _parsed_document(text):
    return json.loads(text)


def _document(policy):
    if isinstance(policy, str):
        return _parsed_document(policy)
    if isinstance(policy, dict) and "Statement" in policy:
        return policy
    if isinstance(policy, dict):
        document = policy.get("policy_document") or policy.get("PolicyDocument")
    elif getattr(policy, "versions", None):
        document = next(v.document for v in policy.versions if v.is_default)
    else:
        document = policy.document
    document = _parsed_document(document) if isinstance(document, str) else document
    if not isinstance(document, dict):
        raise TypeError(f"no policy document in {type(policy).__name__}: {policy!r}"[:300])
    return document


def _as_list(value):
    return value if isinstance(value, list) else [value]


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern, case_sensitive):
    # Compiled once per pattern: every request is checked against each statement of its
    # role's policies, and building the regex was most of the check (py-spy).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


def _like(pattern, value, case_sensitive=True):
    """IAM's wildcard match: `*` any run of characters, `?` any one."""
    return _wildcard(pattern, case_sensitive).fullmatch(value) is not None


_OPERATORS = {
    "StringLike": _like,
    "StringEquals": lambda expected, value: expected == value,
    "ArnLike": _like,
    "ArnEquals": lambda expected, value: expected == value,
    "Bool": lambda expected, value: str(expected).lower() == str(value).lower(),
}


def _condition_holds(operator, values, expected):
    qualifier = ""
    if operator.startswith(("ForAllValues:", "ForAnyValue:")):
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    match = _OPERATORS.get(operator)
    if match is None:
        # An operator this evaluator does not know is never taken as met.
        return False
    if values is None:
        return qualifier == "ForAllValues" or if_exists
    expected = [str(e) for e in _as_list(expected)]
    hits = [any(match(e, v) for e in expected) for v in values]
    return all(hits) if qualifier == "ForAllValues" else any(hits)


def _leading_keys(request, body):
    """The partition key values a DynamoDB request touches (`dynamodb:LeadingKeys`)."""
    try:
        account = request.account_id
        table = dynamodb_backends[account][request._region].get_table(body["TableName"])
    except Exception:
        return None
    hash_key = table.hash_key_attr
    for field in ("Key", "Item"):
        if field in body and hash_key in body[field]:
            return [next(iter(body[field][hash_key].values()))]
    expression = body.get("KeyConditionExpression")
    if expression:
        names = body.get("ExpressionAttributeNames", {})
        for name, placeholder in re.findall(r"(#?[\w]+)\s*=\s*(:[\w]+)", expression):
            if names.get(name, name) == hash_key:
                value = body.get("ExpressionAttributeValues", {}).get(placeholder)
                if value:
                    return [next(iter(value.values()))]
    return None


def _context(request):
    """The condition keys this request carries, as IAM would see them."""
    context = {}
    query = parse_qs(urlparse(request._path).query)
    if request._service == "s3" and "prefix" in query:
        context["s3:prefix"] = query["prefix"]
    if request._service == "dynamodb":
        try:
            body = json.loads(request._body or b"{}")
        except ValueError:
            body = {}
        keys = _leading_keys(request, body)
        if keys is not None:
            context["dynamodb:LeadingKeys"] = keys
    return context


def _applies(statement, action, resource, context):
    if "NotAction" in statement:
        if any(_like(a, action, False) for a in _as_list(statement["NotAction"])):
            return False
    elif not any(_like(a, action, False) for a in _as_list(statement.get("Action", []))):
        return False
    if resource != "*":
        if "NotResource" in statement:
            if any(_like(r, resource) for r in _as_list(statement["NotResource"])):
                return False
        elif not any(_like(r, resource) for r in _as_list(statement.get("Resource", []))):
            return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, context.get(key), expected):
                return False
    return True


_SINGLE_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _permitted(self, resource):
    if self._action == "sts:GetCallerIdentity":
        return
    self._action = _SINGLE_ACTIONS.get(self._action, self._action)
    context = _context(self)
    allowed = False
    for policy in self._access_key.collect_policies():
        for statement in _as_list(_document(policy).get("Statement", [])):
            if _applies(statement, self._action, resource, context):
                if statement.get("Effect") == "Deny":
                    _log_denial(self, resource, f"denied by {statement.get('Sid', 'a statement')}")
                    self._raise_access_denied()
                allowed = True
    if not allowed:
        _log_denial(self, resource, "no statement allows it")
        self._raise_access_denied()


def _log_denial(request, resource, why):
    # One line per refusal, which devstack's runs count (devstack/src/audit.rs).
    print(
        f"IAM-DENIED {request._access_key.arn} {request._action} on {resource}: {why}",
        file=sys.stderr,
        flush=True,
    )


IAMRequestBase.check_action_permitted = _permitted
_aws_request = IAMRequestBase._create_aws_request


def _aws_request_over_its_body(self):
    if not self._body and self._method in ("GET", "HEAD", "DELETE"):
        data, self._data = self._data, b""
        try:
            return _aws_request(self)
        finally:
            self._data = data
    return _aws_request(self)


IAMRequestBase._create_aws_request = _aws_request_over_its_body

# ---------------------------------------------------------------- the SAM transform
from moto.cloudformation.models import CloudFormationBackend
from samtranslator.yaml_helper import yaml_parse

import sam_translate

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"


def _transformed(template, parameters, region):
    try:
        parsed = json.loads(template)
    except ValueError:
        parsed = yaml_parse(template)
    transforms = parsed.get("Transform") if isinstance(parsed, dict) else None
    if SAM_TRANSFORM not in (transforms if isinstance(transforms, list) else [transforms]):
        return template
    values = {k: v for k, v in (parameters or {}).items() if isinstance(v, str)}
    return json.dumps(sam_translate.translate(parsed, region, values))


_create_change_set = CloudFormationBackend.create_change_set
_create_stack = CloudFormationBackend.create_stack


def _change_set_transformed(self, *args, **kwargs):
    kwargs["template"] = _transformed(kwargs["template"], kwargs.get("parameters"), self.region_name)
    return _create_change_set(self, *args, **kwargs)


def _stack_transformed(self, *args, **kwargs):
    kwargs["template"] = _transformed(kwargs["template"], kwargs.get("parameters"), self.region_name)
    return _create_stack(self, *args, **kwargs)


import moto.cloudformation.responses as _cloudformation_responses
from moto.cloudformation.utils import get_stack_from_s3_url as _stack_from_s3_url


def _stack_from_loopback_url(template_url, account_id, partition):
    parts = urlparse(template_url)
    if parts.hostname == "127.0.0.1":
        template_url = template_url.replace(parts.netloc, "localhost", 1)
    return _stack_from_s3_url(template_url, account_id=account_id, partition=partition)


_cloudformation_responses.get_stack_from_s3_url = _stack_from_loopback_url
CloudFormationBackend.create_change_set = _change_set_transformed
CloudFormationBackend.create_stack = _stack_transformed

# ---------------------------------------------------------------- S3 checksums (see the docstring)
from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response
from moto.s3.utils import compute_checksum

_CHECKED_ALGORITHMS = ("SHA256", "SHA1", "CRC32")


class _BadDigest(S3ClientError):
    code = "BadDigest"

    def __init__(self, algorithm):
        super().__init__(
            "BadDigest", f"The {algorithm} you specified did not match the calculated checksum."
        )


def _verifying_checksum(method):
    def run(self, *args, **kwargs):
        body = self.body if isinstance(self.body, bytes) else (self.body or "").encode()
        for algorithm in _CHECKED_ALGORITHMS:
            claimed = self.headers.get(f"x-amz-checksum-{algorithm.lower()}")
            if claimed and compute_checksum(body, algorithm=algorithm).decode() != claimed:
                raise _BadDigest(algorithm)
        return method(self, *args, **kwargs)

    return run


S3Response.put_object = _verifying_checksum(S3Response.put_object)
S3Response.upload_part = _verifying_checksum(S3Response.upload_part)

def _serve(argv):
    """moto's server, but on waitress instead of werkzeug's development server.

    Werkzeug's server answers every request with `Connection: close` ("They aren't handled
    well by Python's http.server", werkzeug/serving.py), so each AWS call was a new TCP
    connection and a new thread, accepted one at a time by a thread that waits for the GIL
    behind the requests it serves. In a chaos run that accept queue held ~90 connections and
    a webhook's SendMessage waited ~0.5 s in it, though moto then served it in 3 ms. AWS keeps
    connections alive (the SDKs pool them); waitress does too, reads and parses requests in
    one I/O thread and hands them to a fixed pool of threads.

    Like werkzeug's, waitress drops a header with an underscore in its name (a WSGI environ
    cannot tell it from a dash); nothing of this stack sends one."""
    import argparse
    import logging

    from moto.moto_server.werkzeug_app import create_backend_app
    from waitress import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # "Task queue depth" warnings: the EMULATOR-LOAD line says the same once a minute.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    serve(
        DomainDispatcherApplication(create_backend_app),
        host=args.host,
        port=args.port,
        # Long-polled receives hold a thread for their wait (up to 1 s locally), one per
        # poller, and requests wait for a slot (`_Slots`, which bounds the threads that run
        # moto at once) on theirs: enough that a webhook's request always reaches the slots,
        # where it goes first, rather than queueing in waitress behind background work.
        threads=int(os.environ.get("DEVSTACK_EMULATOR_THREADS", "256")),
        connection_limit=2000,
        backlog=2048,
        # Longer than the clients keep an idle pooled connection (hyper: 90 s), so the
        # server never closes one a client is about to reuse.
        channel_timeout=300,
        # Lets a request's handler see that its caller hung up (`_abandoned`).
        channel_request_lookahead=1,
        # A recording's upload or download in a few reads and writes instead of 8 KB ones:
        # each is a turn of the one I/O thread, which waits for the GIL behind the requests.
        recv_bytes=256 * 1024,
        send_bytes=256 * 1024,
        ident="moto",
    )


if __name__ == "__main__":
    threading.Thread(target=_report_load, daemon=True).start()
    # How long a thread keeps the GIL while another asks for it: Python's 5 ms by default.
    # Waitress's one I/O thread reads every request and writes every answer, and a webhook's
    # request thread needs the GIL a few times per request; behind the workers' UpdateItems
    # (CPU-bound validation, about half of moto's time) each turn waited up to 5 ms, again
    # and again. In a seed-42 chaos run the proxy timed 2,114 webhook requests over 300 ms
    # and 148 over 1 s, while moto's own wait and serve stayed under 200 ms p99; with 1 ms,
    # 22 over 300 ms, none over 1 s, and TwiML p99 fell from about 1 s to 243 ms.
    sys.setswitchinterval(float(os.environ.get("DEVSTACK_EMULATOR_SWITCH_INTERVAL", "0.001")))
    _serve(sys.argv[1:])

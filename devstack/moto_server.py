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
from collections import defaultdict

from moto import backends, server
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
        key = request.get("Key") or request.get("Item")
        # PutItem carries the whole item; the table's key attributes are a subset of it, and
        # locking on the full item would not serialise two puts of one key: lock the table.
        name = (request["TableName"], json.dumps(key, sort_keys=True) if "Key" in request else "")
    except (ValueError, KeyError, TypeError):
        return None
    with _guard:
        return _item_locks[name]


def _serialised(self, environ, start_response):
    if environ.get("PATH_INFO") == "/__devstack/id":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [os.environ.get("DEVSTACK_EMULATOR_ID", "").encode()]
    lock = _item_lock(environ)
    if lock is None:
        return _dispatch(self, environ, start_response)
    with lock:
        # Materialise the response inside the lock: the backend may run lazily.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialised


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


Queue.add_message = _locked(Queue.add_message)
Queue.delete_message = _locked(Queue.delete_message)



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


def _document(policy):
    if isinstance(policy, str):
        return json.loads(policy)
    if isinstance(policy, dict) and "Statement" in policy:
        return policy
    if isinstance(policy, dict):
        document = policy.get("policy_document") or policy.get("PolicyDocument")
    elif getattr(policy, "versions", None):
        document = next(v.document for v in policy.versions if v.is_default)
    else:
        document = policy.document
    document = json.loads(document) if isinstance(document, str) else document
    if not isinstance(document, dict):
        raise TypeError(f"no policy document in {type(policy).__name__}: {policy!r}"[:300])
    return document


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _like(pattern, value, case_sensitive=True):
    """IAM's wildcard match: `*` any run of characters, `?` any one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


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

if __name__ == "__main__":
    server.main()

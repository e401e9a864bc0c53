"""moto's server, with DynamoDB requests serialised.

DynamoDB applies a conditional write to an item atomically; moto checks the condition and then
applies the update with no lock, and its server handles requests on threads. Two concurrent
writes to one item can then both pass their conditions, or the second can replace an item the
first just created, which real DynamoDB never does and which the call store's idempotency
relies on. Serialising DynamoDB requests restores that guarantee (more strictly than DynamoDB:
per table, not per item). Every other service stays concurrent, so SQS long polls block nothing.

Run with the arguments of `moto_server` (-H HOST -p PORT).
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_dynamodb = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # Materialise the response inside the lock: the backend may run lazily.
            return list(_dispatch(self, environ, start_response))
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    server.main()

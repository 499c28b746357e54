"""The aggregator's view of its learners: who is connected, by which name, and waiting.

Flower's legacy transport knows a learner only by its gRPC peer (``ipv4:10.0.0.7:51234``).
Decision: the aggregator asks every new learner for its name once (``get_properties``, the
learner answers ``FLOPS_LEARNER_NAME`` or its host name), so errors say "learner
learner-2", and the same channel carries the final status back to every learner. Waiting for
learners is bounded by ``FLOPS_WAIT_TIMEOUT``, also inside Flower's own sampling, whose
default wait is a day.
"""

from __future__ import annotations

import concurrent.futures
import math

from flops_utils.logging import logger
from flwr.common import GetPropertiesIns, Scalar
from flwr.server import SimpleClientManager
from flwr.server.client_proxy import ClientProxy

from flops_actor.events import Events
from flops_actor.learner_client import LEARNER_KEY

NAME_TIMEOUT = 30.0
STATUS_TIMEOUT = 10.0


class Learners(SimpleClientManager):
    def __init__(self, events: Events, wait_timeout: float) -> None:
        super().__init__()
        self.events = events
        self.wait_timeout = wait_timeout
        self.names: dict[str, str] = {}

    def register(self, client: ClientProxy) -> bool:
        registered = super().register(client)
        if registered:
            self.events.emit("joined", peer=client.cid, learners=self.num_available())
        return registered

    def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
        # SimpleClientManager waits on a condition; a float timeout works despite the hint.
        return super().wait_for(num_clients, timeout=min(timeout, math.ceil(self.wait_timeout)))

    def name(self, cid: str) -> str:
        return self.names.get(cid, cid)

    def learn_names(self, server_round: int) -> None:
        """Ask each learner not yet named for its name; a silent one keeps its peer address."""
        for cid, proxy in self.all().items():
            if cid in self.names:
                continue
            try:
                res = proxy.get_properties(GetPropertiesIns(config={}), NAME_TIMEOUT, server_round)
                name = res.properties.get(LEARNER_KEY)
                self.names[cid] = str(name) if name else cid
            except Exception as exc:
                logger.warning("learner %s did not tell its name: %s", cid, exc)
                self.names[cid] = cid

    def tell_all(self, status: dict[str, Scalar]) -> None:
        """Send the federation's outcome to every connected learner before disconnecting."""
        proxies = list(self.all().values())
        if not proxies:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(proxies)) as pool:
            futures = [
                pool.submit(p.get_properties, GetPropertiesIns(config=status), STATUS_TIMEOUT, None)
                for p in proxies
            ]
            for future in futures:
                if future.exception() is not None:
                    logger.warning("a learner missed the final status: %s", future.exception())

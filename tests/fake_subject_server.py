"""A SharpFu server whose catalog also offers the test double
tests/fake_subject.py for the select op (no subject model is needed):
`python tests/fake_subject_server.py` takes the server's own arguments.
For the tests that run Select Subject end to end without the real network
(server.scratch.ServerProcess(program=FAKE_SUBJECT_SERVER))."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import server.engine  # noqa: E402
from fake_subject import FakeSubject  # noqa: E402
from server.app import main  # noqa: E402


class WithFakeSubject(server.engine.Engine):
    def __init__(self, settings):
        super().__init__(settings)
        self.catalog.add(FakeSubject())


server.engine.Engine = WithFakeSubject     # what server.app.main builds

if __name__ == "__main__":
    main()

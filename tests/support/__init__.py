"""What the tests share that is not a fixture: factories, the OpenAPI checks, process helpers."""

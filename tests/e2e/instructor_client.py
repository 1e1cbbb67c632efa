"""Asks the gateway for a `Person` through instructor, in the mode named, and prints what came back.

Run by tests/e2e/test_instructor.py with the interpreter of instructor's own virtualenv:
  python instructor_client.py <base url> <api key> <TOOLS|JSON|JSON_SCHEMA|MD_JSON>
"""

from __future__ import annotations

import json
import sys

import instructor
from openai import OpenAI
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int


def main(base_url: str, api_key: str, mode: str) -> None:
    client = instructor.from_openai(OpenAI(base_url=base_url, api_key=api_key, max_retries=0),
                                    mode=instructor.Mode[mode])
    person, completion = client.chat.completions.create_with_completion(
        model="smollm2:135m", response_model=Person, max_retries=0,
        messages=[{"role": "user", "content": "Ada Lovelace was 36."}])
    print(json.dumps({"person": person.model_dump(), "total_tokens": completion.usage.total_tokens}))


if __name__ == "__main__":
    main(*sys.argv[1:4])

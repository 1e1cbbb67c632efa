from infergate.domain.messages import Message
from infergate.domain.tokens import TEMPLATE_TOKENS_PER_MESSAGE, TEMPLATE_TOKENS_PER_REQUEST, prompt_tokens_upper_bound


def test_the_bound_counts_every_utf8_byte_and_the_template():
    messages = [Message(role="user", content="héllo")]  # 6 bytes
    assert prompt_tokens_upper_bound(messages) == TEMPLATE_TOKENS_PER_REQUEST + TEMPLATE_TOKENS_PER_MESSAGE + 6


def test_the_bound_grows_with_each_message():
    one = [Message(role="user", content="a")]
    two = [*one, Message(role="assistant", content="b")]
    assert prompt_tokens_upper_bound(two) == prompt_tokens_upper_bound(one) + TEMPLATE_TOKENS_PER_MESSAGE + 1

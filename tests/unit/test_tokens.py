from infergate.domain.messages import Message
from infergate.domain.tokens import TEMPLATE_TOKENS_PER_MESSAGE, TEMPLATE_TOKENS_PER_REQUEST, prompt_tokens_upper_bound


def test_the_bound_counts_every_utf8_byte_and_the_template():
    messages = [Message(role="user", content="héllo")]  # 6 bytes
    assert prompt_tokens_upper_bound(messages) == TEMPLATE_TOKENS_PER_REQUEST + TEMPLATE_TOKENS_PER_MESSAGE + 6


def test_the_bound_grows_with_each_message():
    one = [Message(role="user", content="a")]
    two = [*one, Message(role="assistant", content="b")]
    assert prompt_tokens_upper_bound(two) == prompt_tokens_upper_bound(one) + TEMPLATE_TOKENS_PER_MESSAGE + 1


def test_the_bound_covers_tool_calls_tool_results_images_and_what_the_model_reads_besides():
    from infergate.domain.messages import ToolCall
    from infergate.domain.tokens import TOKENS_PER_IMAGE

    plain = [Message(role="user", content="a")]
    assert prompt_tokens_upper_bound(plain, extra="tools!") == prompt_tokens_upper_bound(plain) + 6
    called = [Message(role="assistant", content="", tool_calls=(ToolCall("call_1", "f", {"x": 1}),))]
    assert prompt_tokens_upper_bound(called) > prompt_tokens_upper_bound([Message(role="assistant", content="")])
    answered = [Message(role="tool", content="r", tool_name="f")]
    assert prompt_tokens_upper_bound(answered) == prompt_tokens_upper_bound([Message(role="tool", content="rf")])
    pictured = [Message(role="user", content="a", images=("aGk=",))]
    assert prompt_tokens_upper_bound(pictured) == prompt_tokens_upper_bound(plain) + TOKENS_PER_IMAGE

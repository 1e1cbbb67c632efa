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


def words(text: str) -> int:
    """A stand-in tokenizer: a token a word."""
    return len(text.split())


def test_a_named_tokenizer_counts_its_models_prompts_and_bytes_count_the_rest():
    from infergate.domain.tokens import Tokenizers, utf8_bytes

    loads = []
    tokenizers = Tokenizers({"small:latest": lambda: loads.append(1) or words}, default="small", aliases={})
    message = [Message(role="user", content="one two three")]
    assert prompt_tokens_upper_bound(message, count=tokenizers.count_for(None)) == (
        TEMPLATE_TOKENS_PER_REQUEST + TEMPLATE_TOKENS_PER_MESSAGE + 3)
    assert tokenizers.count_for("small:latest") is tokenizers.count_for("small") and loads == [1], "loaded once"
    assert tokenizers.count_for("other") is utf8_bytes


def test_an_alias_is_counted_by_the_most_any_of_its_models_counts_and_in_bytes_if_one_has_no_tokenizer():
    from infergate.domain.tokens import Tokenizers, utf8_bytes

    def letters(text: str) -> int:
        return len(text.replace(" ", ""))

    tokenizers = Tokenizers({"a:1": lambda: words, "b:1": lambda: letters}, default="a:1",
                            aliases={"both": ["a:1", "b:1"], "partly": ["a:1", "c:1"]})
    assert tokenizers.count_for("both")("ab cd") == 4
    assert tokenizers.count_for("partly") is utf8_bytes


def test_a_tokenizer_that_cannot_be_loaded_leaves_its_model_counted_in_bytes(caplog):
    import logging

    from infergate.domain.tokens import Tokenizers, utf8_bytes

    caplog.set_level(logging.ERROR, logger="infergate.domain.tokens")
    logging.getLogger("infergate.domain.tokens").addHandler(caplog.handler)  # the domain's logs go to Powertools

    def broken():
        raise OSError("no such file")

    tokenizers = Tokenizers({"a:1": broken}, default="a:1", aliases={})
    assert tokenizers.count_for("a:1") is utf8_bytes
    try:
        assert any("tokenizer could not be loaded" in record.message for record in caplog.records)
    finally:
        logging.getLogger("infergate.domain.tokens").removeHandler(caplog.handler)

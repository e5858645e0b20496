"""Explanation texts of every flag in configs/flags.toml, as English msgids (translated on display).

Each flag gets a label, its factory analogy, what the learner will observe after moving it, and
the risk. `notes` hold what the flag does (or does not do) on one backend, shown instead of
pretending the control works everywhere. Group titles and analogies follow the factory's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dashboard.i18n import N_


@dataclass(frozen=True)
class FlagTexts:
    label: str
    analogy: str
    observe: str
    risk: str
    notes: dict[str, str] = field(default_factory=dict)  # backend -> what it means there
    choices: dict[str, str] = field(default_factory=dict)  # choice value -> friendly label


@dataclass(frozen=True)
class GroupTexts:
    title: str
    analogy: str
    icon: str


GROUP_TEXTS: dict[str, GroupTexts] = {
    "warehouse": GroupTexts(
        N_("Warehouse and memory"),
        N_(
            "The warehouse keeps the work in progress of every customer (the KV cache). "
            "A bigger warehouse lets more customers be served at the same time."
        ),
        ":material/warehouse:",
    ),
    "conveyor": GroupTexts(
        N_("Conveyor and lengths"),
        N_(
            "How long one order may be, question and answer together, "
            "and how many pieces the forklift carries to the machines in one trip."
        ),
        ":material/conveyor_belt:",
    ),
    "lanes": GroupTexts(
        N_("Lanes and batching"),
        N_("How many customers are served side by side, and how many factory halls share one model."),
        ":material/view_week:",
    ),
    "shortcuts": GroupTexts(
        N_("Shortcuts"),
        N_(
            "Tricks that save work: copy the worksheet (prefix caching), hand over the whole blueprint "
            "at once (CUDA graphs) and unpack long orders a few boxes at a time (chunked prefill)."
        ),
        ":material/bolt:",
    ),
    "materials": GroupTexts(
        N_("Materials"),
        N_("What the bricks and the trays are made of: the precision of the weights and of the KV cache."),
        ":material/category:",
    ),
    "doors": GroupTexts(
        N_("Doors and keys"),
        N_(
            "Who may come in and how: the front door (host), its number (port), the door key and the master "
            "key."
        ),
        ":material/door_front:",
    ),
}

UNIT_TEXTS: dict[str, str] = {
    "fraction": N_("share of the GPU"),
    "GiB": N_("GiB"),
    "tokens": N_("tokens"),
    "sequences": N_("requests at once"),
    "GPUs": N_("GPUs"),
}

BACKEND_NAMES: dict[str, str] = {"cpu": N_("CPU"), "cuda": N_("NVIDIA GPU")}

FLAG_TEXTS: dict[str, FlagTexts] = {
    "gpu_memory_utilization": FlagTexts(
        label=N_("Warehouse size (share of GPU memory)"),
        analogy=N_(
            "How much of the factory floor you fence off for this factory. 0.6 means 60 of every "
            "100 square metres: the model's bricks go in first, the warehouse (KV cache) gets the rest."
        ),
        observe=N_(
            "A bigger share gives more KV tokens and a higher maximum concurrency in the startup report. "
            "vLLM takes this share of the WHOLE card at start, even for a tiny model."
        ),
        risk=N_(
            "Too high and the start fails when other programs already use the GPU; "
            "too low and nothing is left for the warehouse."
        ),
        notes={
            "cpu": N_(
                "No effect on CPU: there is no GPU memory to share out. "
                "Size the warehouse with the KV cache size in GiB instead."
            )
        },
    ),
    "kv_cache_memory_gib": FlagTexts(
        label=N_("Warehouse size in GiB (KV cache)"),
        analogy=N_(
            "Instead of a share of the floor, say exactly how many shelves the warehouse gets. "
            "For SmolLM2, 1 GiB holds about 46,000 tokens of work in progress."
        ),
        observe=N_(
            "The startup report's KV cache tokens and maximum concurrency grow in step with this number. "
            "A single answer does not get faster; more customers fit at once."
        ),
        risk=N_(
            "More than the free memory and the start fails, or the computer slows down as it runs out of RAM."
        ),
        notes={
            "cuda": N_("On a GPU this exact size wins over the warehouse share when both are set."),
        },
    ),
    "max_model_len": FlagTexts(
        label=N_("Longest conveyor belt (question + answer)"),
        analogy=N_(
            "The longest model the belt can carry, counted in tokens for the question and the answer "
            "together. "
            "A 2-metre belt cannot build a 3-metre dragon: its tail gets cut off."
        ),
        observe=N_(
            "A longer belt keeps more warehouse room per customer, so the maximum concurrency drops. "
            "Pika's question is about 430 tokens, so 1,024 is plenty."
        ),
        risk=N_(
            "Too short and long questions are refused. Longer than the warehouse can hold and the start "
            "fails; "
            "vLLM then says the longest belt that fits."
        ),
    ),
    "max_num_batched_tokens": FlagTexts(
        label=N_("Forklift load per trip (tokens per step)"),
        analogy=N_(
            "How many pieces the forklift carries to the machines in one trip: "
            "one big dragon or ten small chickens, the total can never be more than this."
        ),
        observe=N_(
            "A bigger load reads long questions in fewer trips (a sooner first token for long prompts); "
            "a smaller one keeps the other customers' answers flowing smoothly."
        ),
        risk=N_(
            "Very big loads need more working memory at start. "
            "Smaller than the belt makes long questions travel in several trips."
        ),
    ),
    "max_num_seqs": FlagTexts(
        label=N_("Checkout lanes open (requests at once)"),
        analogy=N_(
            "Like the checkouts of a supermarket: how many customers are served side by side. "
            "More lanes serve a bigger crowd, but every lane needs room in the warehouse."
        ),
        observe=N_(
            "When many customers arrive together, more lanes raise the total throughput, while each customer "
            "may wait a little longer per token. Customers beyond the lanes wait in a queue."
        ),
        risk=N_(
            "More lanes than the warehouse can fill do not help: vLLM only runs as many as the KV cache "
            "holds."
        ),
    ),
    "tensor_parallel_size": FlagTexts(
        label=N_("GPUs sharing one model (tensor parallel)"),
        analogy=N_(
            "Split every big machine across several factory halls so that a giant model fits; "
            "the halls must call each other at every step."
        ),
        observe=N_(
            "Models too big for one GPU can run. For a tiny model like SmolLM2 it only adds phone calls "
            "between GPUs."
        ),
        risk=N_("It needs that many GPUs, and the model's attention heads must divide evenly between them."),
        notes={"cpu": N_("No effect on CPU: splitting one model across GPUs needs several NVIDIA GPUs.")},
    ),
    "enable_prefix_caching": FlagTexts(
        label=N_("Copy the worksheet (prefix caching)"),
        analogy=N_(
            "The teacher writes the exercise on the board once and pupils copy only their own answers: "
            "the shared opening (Pika's long system prompt) is read once and remembered."
        ),
        observe=N_(
            "From the second request with the same opening, the first token comes sooner, "
            "because the opening is not read again."
        ),
        risk=N_(
            "Almost none: it uses warehouse space that would otherwise sit empty. "
            "Turn it off only to measure how much it helps."
        ),
    ),
    "enforce_eager": FlagTexts(
        label=N_("Boss dictates every step (eager mode)"),
        analogy=N_(
            "On: the boss stands beside the worker and dictates each small step (slow, but the work starts "
            "at once). "
            "Off: the boss hands over the whole blueprint (CUDA graphs) and the worker runs through it."
        ),
        observe=N_(
            "On a GPU, turning it off makes every token much faster, while the start takes longer "
            "(compiling and recording the blueprint)."
        ),
        risk=N_(
            "On: slower tokens. Off: a longer start and a little more memory for the recorded blueprints."
        ),
        notes={
            "cpu": N_(
                "On CPU there are no CUDA graphs (they exist only on NVIDIA GPUs): turning eager mode off "
                "only adds a compile step of about a minute at every start, for a small gain."
            )
        },
    ),
    "enable_chunked_prefill": FlagTexts(
        label=N_("Unpack long orders in chunks (chunked prefill)"),
        analogy=N_(
            "A long order is unpacked a few boxes at a time, "
            "so the workers keep finishing the other customers' models in between."
        ),
        observe=N_(
            "With long questions arriving while others are being answered, the answers keep flowing "
            "without long pauses. For one customer alone little changes."
        ),
        risk=N_(
            "Low: current vLLM turns it on by itself. Off lets one long question hold everyone up for a "
            "moment."
        ),
    ),
    "optimization_level": FlagTexts(
        label=N_("Rehearsal before opening (optimisation level)"),
        analogy=N_(
            "How much the workshop rehearses before opening its doors: 0 opens at once, 3 rehearses every "
            "move."
        ),
        observe=N_(
            "Higher levels make the start longer (compiling) and the tokens faster. Level 0 is close to "
            "eager mode."
        ),
        risk=N_("High levels can take minutes to start on a small machine."),
        choices={
            "0": N_("0 · open at once"),
            "1": N_("1 · a quick rehearsal"),
            "2": N_("2 · standard rehearsal"),
            "3": N_("3 · full rehearsal"),
        },
    ),
    "dtype": FlagTexts(
        label=N_("Brick precision (dtype)"),
        analogy=N_(
            "How finely every LEGO brick is made. float16 and bfloat16 are standard bricks, light and fast; "
            "float32 are premium bricks, twice as heavy and only a hair more exact."
        ),
        observe=N_("float32 doubles the weights in memory and makes every token slower."),
        risk=N_("float16 is slow or unsupported on many CPUs; float32 needs twice the memory."),
        notes={"cpu": N_("On CPU, bfloat16 is the sensible choice.")},
        choices={"auto": N_("auto · as the model was saved")},
    ),
    "kv_cache_dtype": FlagTexts(
        label=N_("Tray material (KV cache dtype)"),
        analogy=N_(
            "The trays that hold work in progress. fp8 trays are thinner, so the warehouse holds twice as "
            "many, "
            "but they are a little harder to stack."
        ),
        observe=N_("fp8 doubles the KV tokens and the maximum concurrency; answers may change slightly."),
        risk=N_("fp8 needs a recent NVIDIA GPU and can lower the quality of answers a little."),
        notes={"cpu": N_("No effect on CPU here: the thinner fp8 trays need an NVIDIA GPU.")},
        choices={"auto": N_("auto · same as the bricks")},
    ),
    "quantization": FlagTexts(
        label=N_("Pressed bricks (quantization)"),
        analogy=N_(
            "Bricks pressed into a smaller shape (fp8, AWQ, GPTQ): lighter to carry, a little less detailed."
        ),
        observe=N_(
            "Less memory for the weights and often faster tokens on big models; for a 135M model the gain "
            "is tiny."
        ),
        risk=N_("The model must be saved in that format (AWQ, GPTQ), or the start fails."),
        notes={"cpu": N_("No effect on CPU: these pressed formats run only on NVIDIA GPUs.")},
        choices={"none": N_("none · normal bricks")},
    ),
    "seed": FlagTexts(
        label=N_("Lucky number (random seed)"),
        analogy=N_(
            "The number the dice start from: the same seed gives the same rolls, so random answers repeat."
        ),
        observe=N_(
            "With a temperature above 0, the same seed makes runs easier to repeat. At temperature 0 "
            "nothing changes."
        ),
        risk=N_("None for speed."),
    ),
    "enable_log_requests": FlagTexts(
        label=N_("Loudspeaker for every order (request logging)"),
        analogy=N_(
            'A loudspeaker that shouts "Hello! New order!" for every customer: '
            "handy when looking for a problem, noisy when the factory is busy."
        ),
        observe=N_("Every request writes lines to the server log; the speed hardly changes at small loads."),
        risk=N_(
            "The log may keep what users typed. It replaces the old --disable-log-requests, "
            "which current vLLM no longer accepts."
        ),
    ),
    "host": FlagTexts(
        label=N_("Front door (host)"),
        analogy=N_(
            "127.0.0.1: only people inside the factory can place orders. 0.0.0.0: the main door and the "
            "windows "
            "are open, so anyone passing by on the network can order, unless a guard checks for a key."
        ),
        observe=N_("With 0.0.0.0, robots and computers on other machines can reach the server."),
        risk=N_("An open door without a key lets anyone on the network use, and overload, your server."),
        choices={
            "127.0.0.1": N_("127.0.0.1 · only this computer"),
            "0.0.0.0": N_("0.0.0.0 · the whole network"),
        },
    ),
    "port": FlagTexts(
        label=N_("Door number (port)"),
        analogy=N_("The number on the factory door that customers knock on."),
        observe=N_("Clients must put the same number in the address they call."),
        risk=N_("Two programs cannot share one door: if the number is taken, the start fails."),
    ),
    "api_key": FlagTexts(
        label=N_("Door key (API key)"),
        analogy=N_("A guard at the door lets in only the customers who show this key."),
        observe=N_('Requests without the key get "HTTP 401". The playground sends the key for you.'),
        risk=N_("The key guards /v1 but not /metrics, and anyone who sees the command line sees the key."),
    ),
    "trust_remote_code": FlagTexts(
        label=N_("Master key (trust remote code)"),
        analogy=N_(
            "Lets the factory open strange blueprints from outside and follow them without a strict check. "
            "Some new models need it."
        ),
        observe=N_(
            "Nothing changes for SmolLM2, which does not need it. "
            "Models that ship their own code refuse to load without it."
        ),
        risk=N_(
            "The model's files can run any Python code on this computer. Turn it on only for models you "
            "trust."
        ),
    ),
    "served_model_name": FlagTexts(
        label=N_("Name on the shop sign (served model name)"),
        analogy=N_("The name customers use when they order. Empty means the model's own name."),
        observe=N_('Requests must use this name in their "model" field.'),
        risk=N_('Clients that still use the old name get "model not found".'),
    ),
    "speculative_config": FlagTexts(
        label=N_("Guess the next bricks from the order sheet (speculative decoding by prompt lookup)"),
        analogy=N_(
            "A helper looks at the order sheet, finds the words the worker is about to write and lays out "
            "the next few bricks in advance; the worker checks them all in one go and keeps those that fit."
        ),
        observe=N_(
            "When the answer repeats words from the question (JSON keys copied from the instructions), "
            "several tokens can be accepted in one step. When the guesses miss, each step gets a little "
            "slower instead."
        ),
        risk=N_(
            "The answer stays the same, but the speed can go either way: on an H200 it made the Pika "
            "answer slower (128 ms against 66-74 ms), because vLLM then gives up its faster scheduling."
        ),
        choices={
            "none": N_("off · one token per step"),
            '{"method":"ngram","num_speculative_tokens":2,"prompt_lookup_max":4,"prompt_lookup_min":2}': N_(
                "prompt lookup · guess 2 tokens"
            ),
            '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}': N_(
                "prompt lookup · guess 4 tokens"
            ),
        },
    ),
    "structured_outputs_config": FlagTexts(
        label=N_("The stencil for JSON answers (structured-output backend)"),
        analogy=N_(
            "A stencil laid over the answer sheet so only allowed shapes can be drawn. Different stencil "
            "makers (xgrammar, guidance) cut it differently; without whitespace the stencil has no room "
            "for spaces between the parts."
        ),
        observe=N_(
            "JSON answers may get a few tokens shorter without whitespace, and the time each step spends "
            "on the stencil changes with the backend."
        ),
        risk=N_(
            "At temperature 0 a different stencil can change the answer itself: on an H200, xgrammar "
            'without whitespace turned Pika\'s "afraid" into "happy". Check the answers, not only '
            "the speed."
        ),
        choices={
            "none": N_("vLLM chooses"),
            '{"backend":"xgrammar"}': N_("xgrammar"),
            '{"backend":"xgrammar","disable_any_whitespace":true}': N_("xgrammar · no whitespace"),
            '{"backend":"guidance"}': N_("guidance"),
            '{"backend":"guidance","disable_any_whitespace":true}': N_("guidance · no whitespace"),
        },
    ),
    "stream_interval": FlagTexts(
        label=N_("Deliver bricks in bags (stream interval)"),
        analogy=N_(
            "The courier can run to the customer with every single brick, or wait and bring a small bag "
            "of them at once."
        ),
        observe=N_(
            "Bigger bags mean fewer trips, so the whole answer can arrive a little sooner, while the "
            "first words appear later and in bigger jumps."
        ),
        risk=N_("Chat users see the text arrive in bursts instead of word by word."),
    ),
    "async_scheduling": FlagTexts(
        label=N_("Plan the next step while working (async scheduling)"),
        analogy=N_(
            "The foreman prepares the next round of work while the workers are still busy with this one, "
            "so nobody waits for the plan."
        ),
        observe=N_("On a GPU each token can come a little sooner, because the gaps between steps shrink."),
        risk=N_("Some features (for example prompt-lookup guessing) switch it off again."),
        notes={"cpu": N_("No effect on CPU here: this option is for GPUs.")},
    ),
    "performance_mode": FlagTexts(
        label=N_("Factory mode (performance mode)"),
        analogy=N_(
            "Tell the factory whether to favour one customer at a time (interactivity), many customers "
            "at once (throughput) or a bit of both (balanced)."
        ),
        observe=N_(
            "Changes which GPU kernels and recorded blueprints are used. On an H200 the Pika answer did "
            "not get faster with interactivity."
        ),
        risk=N_("Low; the gain depends on the GPU and the load, so measure it."),
        notes={"cpu": N_("No effect on CPU: the modes choose GPU kernels.")},
        choices={
            "balanced": N_("balanced"),
            "interactivity": N_("interactivity · one customer fast"),
            "throughput": N_("throughput · many customers"),
        },
    ),
}


def texts_for(texts_key: str) -> FlagTexts:
    """The texts of one flag (by the catalog's `texts` key)."""
    try:
        return FLAG_TEXTS[texts_key]
    except KeyError:
        raise KeyError(
            f"no texts for flag {texts_key!r}; add them to dashboard/engine/flag_texts.py"
        ) from None


def group_texts(group: str) -> GroupTexts:
    return GROUP_TEXTS[group]

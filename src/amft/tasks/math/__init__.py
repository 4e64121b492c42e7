"""Math reasoning: dataset loaders, answer extraction, Math-Verify rewards, benchmarks and a
generator of small word problems for the CPU demo."""

from .answers import boxed_answers, choice_letter, gsm8k_answer, last_boxed_answer
from .benchmarks import BENCHMARKS, BenchmarkRows, load_benchmark, option_letters, read_benchmark_files
from .data import MathColumns, load_math_rows
from .generator import WordProblem, generate_problems
from .task import MathConfig, MathEnv, MathTask
from .verify import answers_match

__all__ = [
    "BENCHMARKS",
    "BenchmarkRows",
    "MathColumns",
    "MathConfig",
    "MathEnv",
    "MathTask",
    "WordProblem",
    "answers_match",
    "boxed_answers",
    "choice_letter",
    "generate_problems",
    "gsm8k_answer",
    "last_boxed_answer",
    "load_benchmark",
    "load_math_rows",
    "option_letters",
    "read_benchmark_files",
]

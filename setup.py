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
    entry_points={"console_scripts": ["rasa-kd=rasa_kd.cli:main"]},
)

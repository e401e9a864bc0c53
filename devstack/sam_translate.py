"""The SAM transform, offline: infra/template.yaml in, the CloudFormation template out (JSON).

This is what CloudFormation's AWS::Serverless-2016-10-31 transform does to the template when
`sam deploy` creates its change set, run here with the pinned aws-sam-translator (the library
the transform is built from) so that the local stack deploys the very template AWS gets.
Two things stand in for `sam package`: each function's CodeUri (a local folder, which `sam
build` turns into a zip) becomes the S3 object the caller uploaded, and the region is the
emulator's.

Usage: sam_translate.py TEMPLATE REGION CODE_URI [Name=Value ...]
(CODE_URI: s3://bucket/key of the placeholder code; the parameters as `sam deploy
--parameter-overrides` takes them). Prints the translated template on stdout.
"""

import json
import sys

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse


def translate(template, region, parameters):
    """The SAM transform of `template` (a dict) with `parameters` (name → value)."""
    # The template names only its own inline policies and AWS-managed ARNs, never a managed
    # policy by name, so the transform needs no IAM lookup (the map stays empty).
    translator = Translator(
        managed_policy_map={},
        sam_parser=parser.Parser(),
        plugins=[],
        boto_session=boto3.Session(region_name=region),
    )
    return translator.translate(
        sam_template=template,
        parameter_values=parameters,
        get_managed_policy_map=lambda: {},
    )


def main(argv):
    template_path, region, code_uri, *overrides = argv
    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    parameters = dict(override.split("=", 1) for override in overrides)
    try:
        translated = translate(template, region, parameters)
    except InvalidDocumentException as e:
        causes = "; ".join(str(cause) for cause in e.causes)
        sys.exit(f"the SAM transform refused {template_path}: {e} {causes}")
    json.dump(translated, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

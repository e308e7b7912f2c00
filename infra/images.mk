# The training and convert images (infra/images.py; docs/deploy.md "First deployment, end to end").
# Included by the Makefile, whose PY, TOOLS and $(TOOLS)/%/.stamp rule it uses.
#
#   make images [CONFIG_ENV=dev] [STACK=name]   build, push to ECR, print the URIs (needs Docker and AWS)
#   make images-plan [CONFIG_ENV=dev] [ACCOUNT=123456789012]   the same commands, printed, none run
#   make images-build                         build both images into the local engine only
#   make hadolint                             lint both Dockerfiles (.hadolint.yaml)

CONFIG_ENV ?= default
DOCKERFILES := infra/modelops_training/Dockerfile functions/convert/Dockerfile
IMAGES_ARGS = --config-env $(CONFIG_ENV) $(if $(STACK),--stack $(STACK)) --region $(or $(AWS_REGION),$(AWS_DEFAULT_REGION))

.PHONY: images images-plan images-build hadolint
images: $(TOOLS)/awscli/.stamp
	$(PYTHON312) infra/images.py push $(IMAGES_ARGS) --aws $(or $(MODELOPS_AWS_CLI),$(CURDIR)/$(TOOLS)/awscli/bin/aws)

images-plan:
	@$(PYTHON312) infra/images.py plan $(IMAGES_ARGS) $(if $(ACCOUNT),--account $(ACCOUNT))

images-build:
	$(PYTHON312) infra/images.py build $(IMAGES_ARGS)

hadolint: $(TOOLS)/hadolint/.stamp
	$(TOOLS)/hadolint/bin/hadolint --config .hadolint.yaml --no-color $(DOCKERFILES)
